/**
 * Unit tests of `shared/protocol.ts`: decoding requests, validating tasks and encoding frames.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import {
  type Decoded,
  decodeRequest,
  encodeFrame,
  Reply,
  type Request,
} from "../../shared/protocol.ts";
import { BUILTIN_CATALOG } from "../../shared/catalog.ts";
import { MAX_HASH_ITERATIONS, MAX_SLEEP_MS } from "../../shared/tasks.ts";

const encoder = new TextEncoder();
const LIMITS = { maxDepth: 64 };

function decode(line: string | Uint8Array, maxDepth = LIMITS.maxDepth): Decoded<Request> {
  const bytes = typeof line === "string" ? encoder.encode(line) : line;
  return decodeRequest(bytes, { maxDepth });
}

/** Asserts a decode failed and returns its id and error. */
function failure<T>(decoded: Decoded<T>): { id: string | null; error: ColmenaError } {
  if (decoded.ok) assert.fail(`expected a failure, got ${JSON.stringify(decoded.value)}`);
  assert.ok(decoded.error instanceof ColmenaError);
  return { id: decoded.id, error: decoded.error };
}

/** Asserts a decode succeeded and returns its value. */
function success<T>(decoded: Decoded<T>): T {
  if (!decoded.ok) {
    assert.fail(`expected success, got ${decoded.error.code}: ${decoded.error.message}`);
  }
  return decoded.value;
}

function invalidPayload(type: string, payload: unknown): ColmenaError {
  const { error } = failure(validateTask({ type, payload }));
  assert.equal(error.code, "INVALID_PAYLOAD");
  return error;
}

/** The built-in catalogue's check of a submitted task, as the server runs it. */
function validateTask(task: { type: string; payload: unknown }) {
  return BUILTIN_CATALOG.validate(task);
}

function validPayload(type: string, payload: unknown): { type: string; payload: unknown } {
  const { type: name, payload: valid } = success(validateTask({ type, payload }));
  return { type: name, payload: valid };
}

Deno.test("decodeRequest answers INVALID_JSON with a null id for text that is not JSON", () => {
  for (const line of ['{"type":"ping",', "hola", "{'type':'ping'}", "", '{"id":"a"} x']) {
    const { id, error } = failure(decode(line));
    assert.equal(error.code, "INVALID_JSON", line);
    assert.equal(id, null);
    assert.equal(error.retryable, false);
  }
});

Deno.test("decodeRequest answers INVALID_JSON for bytes that are not valid UTF-8", () => {
  const invalid = [
    Uint8Array.of(0x7b, 0xff, 0x7d), // 0xff never appears in UTF-8
    Uint8Array.of(...encoder.encode('{"type":"ping","id":"'), 0xc3, ...encoder.encode('"}')), // truncated "ñ"
    Uint8Array.of(
      ...encoder.encode('{"type":"ping","id":"'),
      0xed,
      0xa0,
      0x80,
      ...encoder.encode('"}'),
    ), // surrogate
    Uint8Array.of(...encoder.encode('{"type":"ping","id":"'), 0xc0, 0xaf, ...encoder.encode('"}')), // overlong "/"
  ];
  for (const bytes of invalid) {
    const { id, error } = failure(decode(bytes));
    assert.equal(error.code, "INVALID_JSON");
    assert.equal(id, null);
  }
});

Deno.test("decodeRequest accepts multi-byte UTF-8 inside strings", () => {
  const value = success(decode('{"type":"hello","id":"ñ€👍","client":{"name":"Peña"}}'));
  assert.equal(value.type, "hello");
  assert.equal(value.id, "ñ€👍");
});

Deno.test("decodeRequest answers TOO_DEEP for nesting deeper than the limit, before parsing", () => {
  const deep = `{"type":"ping","id":"p1","x":${"[".repeat(10)}${"]".repeat(10)}}`;
  const { id, error } = failure(decode(deep, 5));
  assert.equal(error.code, "TOO_DEEP");
  assert.equal(id, null);
  assert.match(error.message, /5/);
  // Unbalanced, unparseable input is refused as TOO_DEEP without reaching JSON.parse.
  assert.equal(failure(decode("[".repeat(100_000), 64)).error.code, "TOO_DEEP");
});

Deno.test("decodeRequest accepts nesting exactly at the limit", () => {
  // The envelope object is depth 1, `client` depth 2.
  const value = success(decode('{"type":"hello","id":"h","client":{"name":"a"}}', 2));
  assert.equal(value.type, "hello");
  assert.equal(
    failure(decode('{"type":"hello","id":"h","client":{"name":"a"}}', 1)).error.code,
    "TOO_DEEP",
  );
});

Deno.test("decodeRequest answers INVALID_MESSAGE and echoes the id for an unknown type", () => {
  const { id, error } = failure(decode('{"type":"dance","id":"r1"}'));
  assert.equal(error.code, "INVALID_MESSAGE");
  assert.equal(id, "r1");
  assert.equal(error.retryable, false);
  assert.match(error.message, /^El mensaje no cumple el protocolo: /);
  assert.match(error.message, /type/);
});

Deno.test("decodeRequest answers INVALID_MESSAGE with a null id when the id is missing", () => {
  const { id, error } = failure(decode('{"type":"ping"}'));
  assert.equal(error.code, "INVALID_MESSAGE");
  assert.equal(id, null);
  assert.match(error.message, /id/);
});

Deno.test("decodeRequest answers INVALID_MESSAGE with a null id when the id is unusable", () => {
  for (
    const line of [
      '{"type":"ping","id":7}',
      '{"type":"ping","id":""}',
      `{"type":"ping","id":"${"x".repeat(129)}"}`,
    ]
  ) {
    const { id, error } = failure(decode(line));
    assert.equal(error.code, "INVALID_MESSAGE", line);
    assert.equal(id, null, line);
  }
});

Deno.test("decodeRequest answers INVALID_MESSAGE for JSON that is not an object", () => {
  for (const line of ["[1,2]", '"ping"', "null", "42", "true"]) {
    const { id, error } = failure(decode(line));
    assert.equal(error.code, "INVALID_MESSAGE", line);
    assert.equal(id, null);
  }
});

Deno.test("decodeRequest names the field with the wrong type and still echoes a readable id", () => {
  const cases: [string, string, RegExp][] = [
    ['{"type":"status","id":"r2","taskId":5}', "r2", /taskId: .*se esperaba/],
    ['{"type":"submit","id":"r3","task":{"type":1}}', "r3", /task\.type/],
    [
      '{"type":"submit","id":"r4","task":{"type":"text"},"options":{"priority":10}}',
      "r4",
      /options\.priority/,
    ],
    ['{"type":"hello","id":"r5","client":{"kind":"tv"}}', "r5", /client\.kind/],
    ['{"type":"hello","id":"r6","protocol":"1"}', "r6", /protocol/],
  ];
  for (const [line, expectedId, field] of cases) {
    const { id, error } = failure(decode(line));
    assert.equal(error.code, "INVALID_MESSAGE", line);
    assert.equal(id, expectedId, line);
    assert.match(error.message, field, line);
  }
});

Deno.test("decodeRequest decodes ping", () => {
  assert.deepEqual(success(decode('{"type":"ping","id":"p"}')), { type: "ping", id: "p" });
});

Deno.test("decodeRequest decodes hello and applies the client defaults", () => {
  assert.deepEqual(success(decode('{"type":"hello","id":"h1"}')), { type: "hello", id: "h1" });
  assert.deepEqual(success(decode('{"type":"hello","id":"h2","client":{},"protocol":1}')), {
    type: "hello",
    id: "h2",
    client: { name: "anonimo", kind: "cli" },
    protocol: 1,
  });
  assert.deepEqual(
    success(decode('{"type":"hello","id":"h3","client":{"name":"app","kind":"mobile"}}')),
    { type: "hello", id: "h3", client: { name: "app", kind: "mobile" } },
  );
});

Deno.test("decodeRequest decodes submit with and without options, leaving the payload unchecked", () => {
  assert.deepEqual(
    success(decode('{"type":"submit","id":"s1","task":{"type":"echo","payload":{"message":[1]}}}')),
    { type: "submit", id: "s1", task: { type: "echo", payload: { message: [1] } } },
  );
  assert.deepEqual(
    success(decode(
      '{"type":"submit","id":"s2","task":{"type":"nope","payload":5},"options":{"priority":9,"timeoutMs":1000}}',
    )),
    {
      type: "submit",
      id: "s2",
      task: { type: "nope", payload: 5 },
      options: { priority: 9, timeoutMs: 1000 },
    },
  );
});

Deno.test("decodeRequest decodes status", () => {
  assert.deepEqual(success(decode('{"type":"status","id":"q","taskId":"t-1"}')), {
    type: "status",
    id: "q",
    taskId: "t-1",
  });
});

Deno.test("validateTask answers UNKNOWN_TASK_TYPE naming the type", () => {
  const { id, error } = failure(validateTask({ type: "resize", payload: {} }));
  assert.equal(error.code, "UNKNOWN_TASK_TYPE");
  assert.equal(id, null);
  assert.equal(error.retryable, false);
  assert.match(error.message, /"resize"/);
});

Deno.test("validateTask does not take Object.prototype names for task types", () => {
  for (const type of ["toString", "__proto__", "constructor", "hasOwnProperty"]) {
    assert.equal(
      failure(validateTask({ type, payload: {} })).error.code,
      "UNKNOWN_TASK_TYPE",
      type,
    );
  }
});

Deno.test("validateTask answers INVALID_PAYLOAD with a Spanish message naming the type and field", () => {
  const error = invalidPayload("text", { text: 5 });
  assert.equal(error.retryable, false);
  assert.match(error.message, /^Datos no válidos para "text": text: /);
  assert.match(error.message, /se esperaba/);
  assert.ok(error.cause !== undefined, "the zod error is kept as cause");
});

Deno.test("validateTask answers INVALID_PAYLOAD when the payload is not an object", () => {
  for (const payload of [null, undefined, "hola", 5, []]) {
    invalidPayload("text", payload);
  }
});

Deno.test("validateTask accepts text", () => {
  assert.deepEqual(validPayload("text", { text: "" }), { type: "text", payload: { text: "" } });
});

Deno.test("validateTask applies the default of 1 hash iteration", () => {
  assert.deepEqual(validPayload("hash", { data: "abc" }), {
    type: "hash",
    payload: { data: "abc", iterations: 1 },
  });
  assert.deepEqual(validPayload("hash", { data: "abc", iterations: 7 }).payload, {
    data: "abc",
    iterations: 7,
  });
});

Deno.test("validateTask bounds hash iterations to integers from 1 to MAX_HASH_ITERATIONS", () => {
  assert.equal(
    (validPayload("hash", { data: "", iterations: MAX_HASH_ITERATIONS }).payload as {
      iterations: number;
    }).iterations,
    MAX_HASH_ITERATIONS,
  );
  for (const iterations of [0, -1, 1.5, MAX_HASH_ITERATIONS + 1, "2"]) {
    assert.match(invalidPayload("hash", { data: "abc", iterations }).message, /iterations/);
  }
  assert.match(invalidPayload("hash", { iterations: 1 }).message, /data/);
});

Deno.test("validateTask accepts numbers with one or more numbers", () => {
  assert.deepEqual(validPayload("numbers", { numbers: [1, -2.5, 0] }).payload, {
    numbers: [1, -2.5, 0],
  });
  assert.deepEqual(validPayload("numbers", { numbers: [7] }).payload, { numbers: [7] });
});

Deno.test("validateTask rejects numbers with an empty array or non-numbers", () => {
  assert.match(invalidPayload("numbers", { numbers: [] }).message, /numbers: /);
  assert.match(invalidPayload("numbers", { numbers: [1, "2", 3] }).message, /numbers\.1: /);
  assert.match(invalidPayload("numbers", { numbers: [null] }).message, /numbers\.0: /);
  assert.match(invalidPayload("numbers", { numbers: "1,2" }).message, /numbers: /);
  invalidPayload("numbers", {});
});

Deno.test("validateTask bounds sleep to integers from 0 to 60000 ms", () => {
  assert.equal(MAX_SLEEP_MS, 60_000);
  assert.deepEqual(validPayload("sleep", { ms: 0 }).payload, { ms: 0 });
  assert.deepEqual(validPayload("sleep", { ms: 60_000 }).payload, { ms: 60_000 });
  for (const ms of [-1, 60_001, 1.5, "10"]) {
    assert.match(invalidPayload("sleep", { ms }).message, /ms: /, String(ms));
  }
  invalidPayload("sleep", {});
});

Deno.test("validateTask accepts any JSON value as echo message, null and nested included", () => {
  const messages = [null, "hola", 0, false, [], {}, { a: [1, { b: null }], c: "ñ" }, [[[["x"]]]]];
  for (const message of messages) {
    assert.deepEqual(validPayload("echo", { message }), { type: "echo", payload: { message } });
  }
});

Deno.test("validateTask requires the echo message key", () => {
  assert.match(invalidPayload("echo", {}).message, /message/);
  assert.match(invalidPayload("echo", { mensaje: "hola" }).message, /message/);
});

Deno.test("encodeFrame ends with exactly one \\n and has no other line break", () => {
  const line = encodeFrame({ type: "pong", id: "a\nb\r\nc" });
  assert.ok(line.endsWith("\n"));
  assert.equal(line.indexOf("\n"), line.length - 1);
  assert.equal(line.includes("\r"), false);
});

Deno.test("encodeFrame round-trips a reply through JSON and the Reply schema", () => {
  const frame = {
    type: "result",
    taskId: "t-1",
    taskType: "echo",
    status: "succeeded",
    output: { message: { nested: [1, "ñ", null] } },
    worker: "w1",
    durationMs: 3,
  } as const;
  const line = encodeFrame(frame);
  assert.deepEqual(JSON.parse(line), frame);
  assert.deepEqual(Reply.parse(JSON.parse(line)), frame);
});

Deno.test("encodeFrame round-trips a request through decodeRequest", () => {
  const request: Request = {
    type: "submit",
    id: "s-ñ",
    task: { type: "text", payload: { text: "línea\ncon salto" } },
    options: { priority: 3 },
  };
  const line = encodeFrame(request);
  assert.deepEqual(success(decode(line.slice(0, -1))), request);
});
