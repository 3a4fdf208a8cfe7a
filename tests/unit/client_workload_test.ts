/**
 * Unit tests of `client/workload.ts`: simulated payloads are valid, and the client's checks agree with the
 * worker's own handlers and catch wrong outputs.
 *
 * @module
 */
import assert from "node:assert/strict";
import { countWords, iteratedSha256, makeTask, verifyOutput } from "../../client/workload.ts";
import type { TaskRequest } from "../../client/task_request.ts";
import { BUILTIN_CATALOG } from "../../shared/catalog.ts";
import { TASK_TYPES, type TaskInput } from "../../shared/tasks.ts";
import { iteratedSha256 as workerSha256 } from "../../shared/tasks/hash.ts";
import { analyzeNumbers } from "../../shared/tasks/numbers_handler.ts";
import { processText } from "../../shared/tasks/text.ts";

/** A seeded generator (mulberry32), so failures can be replayed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function workerOutput(request: TaskRequest): unknown {
  switch (request.type) {
    case "text":
      return processText((request.payload as TaskInput<"text">).text);
    case "numbers":
      return analyzeNumbers((request.payload as TaskInput<"numbers">).numbers);
    case "echo":
      return {
        message: JSON.parse(JSON.stringify((request.payload as TaskInput<"echo">).message)),
      };
    case "sleep":
      return { sleptMs: (request.payload as TaskInput<"sleep">).ms };
    case "hash": {
      const { data, iterations = 1 } = request.payload as TaskInput<"hash">;
      return { sha256: workerSha256(data, iterations) };
    }
  }
  throw new RangeError(request.type);
}

Deno.test("makeTask builds payloads that pass the catalogue's input schemas", () => {
  const random = seeded(1);
  for (let i = 0; i < 200; i++) {
    for (const type of TASK_TYPES) {
      const request = makeTask(type, random);
      assert.equal(request.type, type);
      const parsed = BUILTIN_CATALOG.get(type)!.input.safeParse(request.payload);
      assert.ok(parsed.success, `${type}: ${JSON.stringify(request.payload)}`);
    }
  }
});

Deno.test("makeTask keeps sleeps and hash iterations small", () => {
  const random = seeded(2);
  for (let i = 0; i < 200; i++) {
    const { ms } = makeTask("sleep", random).payload as TaskInput<"sleep">;
    assert.ok(ms >= 0 && ms <= 20);
    const { iterations = 1 } = makeTask("hash", random).payload as TaskInput<"hash">;
    assert.ok(iterations <= 50);
  }
});

Deno.test("verifyOutput accepts what the worker's handlers return", () => {
  const random = seeded(3);
  for (let i = 0; i < 100; i++) {
    for (const type of TASK_TYPES) {
      const request = makeTask(type, random);
      assert.equal(verifyOutput(request, workerOutput(request)), undefined, type);
    }
  }
});

Deno.test("verifyOutput reports wrong counts, sums, echoes, hashes and shapes", () => {
  assert.match(
    verifyOutput({ type: "text", payload: { text: "hola mundo" } }, {
      words: 3,
      reversed: "odnum aloh",
      upper: "HOLA MUNDO",
    }) ?? "",
    /palabras 3, se esperaban 2/,
  );
  assert.match(
    verifyOutput({ type: "numbers", payload: { numbers: [1, 2] } }, {
      count: 2,
      sum: 4,
      avg: 2,
      min: 1,
      max: 2,
    }) ?? "",
    /suma 4, se esperaba 3/,
  );
  assert.ok(
    verifyOutput({ type: "echo", payload: { message: { a: [1] } } }, { message: { a: [2] } }),
  );
  assert.ok(verifyOutput({ type: "sleep", payload: { ms: 20 } }, { sleptMs: 5 }));
  assert.ok(
    verifyOutput({ type: "hash", payload: { data: "a" } }, { sha256: "0".repeat(64) }),
  );
  assert.match(
    verifyOutput({ type: "text", payload: { text: "x" } }, { words: "1" }) ?? "",
    /forma/,
  );
});

Deno.test("the client's word count and hash agree with the worker's", () => {
  for (const text of ["", "  ", "hola", " a  b\tc\nd ", "🐝 miel"]) {
    assert.equal(countWords(text), processText(text).words, JSON.stringify(text));
  }
  assert.equal(
    iteratedSha256("abc", 1),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(iteratedSha256("colmena", 7), workerSha256("colmena", 7));
});
