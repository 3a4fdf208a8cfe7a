/**
 * Unit tests of `shared/framing.ts`: the capped NDJSON line framer and the JSON depth guard.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  DEFAULT_MAX_JSON_DEPTH,
  DEFAULT_MAX_LINE_BYTES,
  exceedsJsonDepth,
  type Framed,
  LineFramer,
} from "../../shared/framing.ts";

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A frame as the tests compare it: a decoded line, or the size reported by a `too_large` notice. */
type Seen = { line: string } | { tooLarge: number };

function bytesOf(chunk: string | Uint8Array): Uint8Array {
  return typeof chunk === "string" ? encoder.encode(chunk) : chunk;
}

function seen(framed: Framed): Seen {
  return framed.kind === "line"
    ? { line: strictUtf8.decode(framed.bytes) }
    : { tooLarge: framed.bytes };
}

/** Feeds the chunks, in order, through a `LineFramer` and collects what comes out. */
async function frameChunks(
  chunks: readonly (string | Uint8Array)[],
  maxLineBytes?: number,
): Promise<Seen[]> {
  const out: Seen[] = [];
  const stream = ReadableStream.from(chunks.map(bytesOf)).pipeThrough(
    new LineFramer(maxLineBytes),
  );
  for await (const framed of stream) out.push(seen(framed));
  return out;
}

/** Splits bytes into chunks of `size` bytes (the last one may be shorter). */
function chunked(bytes: Uint8Array, size: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.slice(i, i + size));
  return chunks;
}

Deno.test("LineFramer yields one line per \\n-terminated line in a single chunk", async () => {
  assert.deepEqual(await frameChunks(['{"a":1}\n{"b":2}\n{"c":3}\n']), [
    { line: '{"a":1}' },
    { line: '{"b":2}' },
    { line: '{"c":3}' },
  ]);
});

Deno.test("LineFramer joins a line split mid-line across chunks", async () => {
  assert.deepEqual(await frameChunks(['{"type":', '"ping",', '"id":"1"}\n']), [
    { line: '{"type":"ping","id":"1"}' },
  ]);
});

Deno.test("LineFramer handles many lines per chunk with a line straddling chunks", async () => {
  assert.deepEqual(await frameChunks(["uno\ndos\ntr", "es\ncuatro\ncin", "co\n"]), [
    { line: "uno" },
    { line: "dos" },
    { line: "tres" },
    { line: "cuatro" },
    { line: "cinco" },
  ]);
});

Deno.test("LineFramer keeps a multi-byte UTF-8 character intact when a chunk splits it at any byte", async () => {
  const text = "ñandú 👍🏽 €";
  const bytes = encoder.encode(`${text}\n`);
  for (let cut = 1; cut < bytes.length; cut++) {
    const chunks = [bytes.slice(0, cut), bytes.slice(cut)];
    assert.deepEqual(await frameChunks(chunks), [{ line: text }], `cut at byte ${cut}`);
  }
});

Deno.test("LineFramer reassembles lines fed one byte per chunk", async () => {
  const bytes = encoder.encode("añ\n€x\n\n👍\n");
  assert.deepEqual(await frameChunks(chunked(bytes, 1)), [
    { line: "añ" },
    { line: "€x" },
    { line: "" },
    { line: "👍" },
  ]);
});

Deno.test("LineFramer drops the \\r of a \\r\\n line ending, also when \\r and \\n arrive in different chunks", async () => {
  assert.deepEqual(await frameChunks(["uno\r\ndos\r", "\ntres\n"]), [
    { line: "uno" },
    { line: "dos" },
    { line: "tres" },
  ]);
});

Deno.test("LineFramer keeps a \\r that is not at the end of the line", async () => {
  assert.deepEqual(await frameChunks(["a\rb\n"]), [{ line: "a\rb" }]);
});

Deno.test("LineFramer yields empty lines as empty frames", async () => {
  assert.deepEqual(await frameChunks(["\n\na\n", "\n"]), [
    { line: "" },
    { line: "" },
    { line: "a" },
    { line: "" },
  ]);
});

Deno.test({
  name: "LineFramer yields lines that stay intact when the writer reuses its chunk buffer",
  // BUG(framing): the fast path for a line held in one chunk enqueues `chunk.subarray(...)`, a view of the
  // caller's buffer, although LineFramer copies partial lines because "the caller may reuse the chunk's
  // buffer after we return". A reused buffer rewrites lines already yielded. Remove `ignore` once fixed.
  async fn() {
    const framer = new LineFramer(64);
    const writer = framer.writable.getWriter();
    const reader = framer.readable.getReader();
    const buffer = encoder.encode("hola\n");
    const next = reader.read();
    await writer.write(buffer);
    buffer.fill(0x41); // the writer reuses its buffer for the next read
    const { value } = await next;
    await writer.close();
    assert.ok(value);
    assert.deepEqual(seen(value), { line: "hola" });
  },
});

Deno.test("LineFramer ignores empty chunks", async () => {
  assert.deepEqual(await frameChunks(["", "ab", "", "c\n", ""]), [{ line: "abc" }]);
});

Deno.test("LineFramer drops a partial line left when the input ends", async () => {
  assert.deepEqual(await frameChunks(["completa\nparcial"]), [{ line: "completa" }]);
  assert.deepEqual(await frameChunks(["sin", " salto"]), []);
});

Deno.test("LineFramer accepts a line exactly at the cap", async () => {
  const line = "x".repeat(8);
  assert.deepEqual(await frameChunks([`${line}\n`], 8), [{ line }]);
  assert.deepEqual(await frameChunks(["xxx", "xxxxx", "\n"], 8), [{ line }]);
});

Deno.test("LineFramer counts the cap in bytes, not characters", async () => {
  // "ñ" is 2 bytes in UTF-8: 4 characters are 8 bytes.
  assert.deepEqual(await frameChunks(["ññññ\n"], 8), [{ line: "ññññ" }]);
  assert.deepEqual(await frameChunks(["ññññx\n"], 8), [{ tooLarge: 9 }]);
});

Deno.test("LineFramer yields a too_large notice for a line one byte over the cap", async () => {
  assert.deepEqual(await frameChunks([`${"x".repeat(9)}\n`], 8), [{ tooLarge: 9 }]);
});

Deno.test("LineFramer yields FRAME_TOO_LARGE notice and resynchronises at the next line", async () => {
  assert.deepEqual(
    await frameChunks([`antes\n${"x".repeat(20)}\ndespués\n`], 8),
    [{ line: "antes" }, { tooLarge: 20 }, { line: "después" }],
  );
});

Deno.test("LineFramer skips an oversized line spread over many chunks and reports its full size once", async () => {
  const chunks = ["ok\nxxxx", "xxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "x\nbien\n"];
  assert.deepEqual(await frameChunks(chunks, 8), [
    { line: "ok" },
    { tooLarge: 30 },
    { line: "bien" },
  ]);
});

Deno.test("LineFramer reports consecutive oversized lines separately", async () => {
  assert.deepEqual(
    await frameChunks([`${"a".repeat(10)}\n${"b".repeat(12)}\nc\n`], 8),
    [{ tooLarge: 10 }, { tooLarge: 12 }, { line: "c" }],
  );
});

Deno.test("LineFramer drops an oversized partial line at the end without a notice", async () => {
  assert.deepEqual(await frameChunks(["ok\n", "x".repeat(20)], 8), [{ line: "ok" }]);
});

Deno.test("LineFramer skips a 64 KiB line fed in 1000-byte chunks under a 1 KiB cap", async () => {
  const huge = new Uint8Array(64 * 1024).fill(0x78);
  const chunks = [...chunked(huge, 1000), encoder.encode("\nfin\n")];
  assert.deepEqual(await frameChunks(chunks, 1024), [{ tooLarge: huge.length }, { line: "fin" }]);
});

Deno.test("LineFramer uses a 1 MiB cap by default", async () => {
  assert.equal(DEFAULT_MAX_LINE_BYTES, 1024 * 1024);
  const atCap = "x".repeat(DEFAULT_MAX_LINE_BYTES);
  const frames = await frameChunks([`${atCap}\n${atCap}y\n`]);
  assert.equal(frames.length, 2);
  assert.deepEqual(frames[0], { line: atCap });
  assert.deepEqual(frames[1], { tooLarge: DEFAULT_MAX_LINE_BYTES + 1 });
});

Deno.test("LineFramer rejects a cap that is not a positive integer with RangeError", () => {
  for (const cap of [0, -1, 1.5, Number.NaN, Infinity]) {
    assert.throws(() => new LineFramer(cap), RangeError, `cap ${cap}`);
  }
});

Deno.test("exceedsJsonDepth compares nesting of arrays and objects with the limit", () => {
  assert.equal(exceedsJsonDepth("[[1]]", 2), false);
  assert.equal(exceedsJsonDepth("[[1]]", 1), true);
  assert.equal(exceedsJsonDepth('{"a":{"b":[1]}}', 3), false);
  assert.equal(exceedsJsonDepth('{"a":{"b":[1]}}', 2), true);
  assert.equal(exceedsJsonDepth("42", 0), false);
  assert.equal(exceedsJsonDepth("{}", 0), true);
});

Deno.test("exceedsJsonDepth counts depth, not the number of sibling containers", () => {
  assert.equal(exceedsJsonDepth("[[],[],{},[1],{}]", 2), false);
  assert.equal(exceedsJsonDepth("[[],[],{},[[]],{}]", 2), true);
  assert.equal(exceedsJsonDepth("[[],[],{},[[]],{}]", 3), false);
});

Deno.test("exceedsJsonDepth ignores brackets inside strings", () => {
  assert.equal(exceedsJsonDepth('{"a":"[[[[{{{{"}', 1), false);
  assert.equal(exceedsJsonDepth('["]]]]", [1]]', 2), false);
  assert.equal(exceedsJsonDepth('["]]]]", [[1]]]', 2), true);
});

Deno.test("exceedsJsonDepth does not end a string at an escaped quote", () => {
  assert.equal(exceedsJsonDepth('{"a":"\\"[[[["}', 1), false);
  assert.equal(exceedsJsonDepth('{"a":"\\" [[[[ \\""}', 1), false);
});

Deno.test("exceedsJsonDepth ends a string after an escaped backslash", () => {
  // The string is `\`; the brackets after it are real nesting.
  const text = '{"a":"\\\\","b":[[1]]}';
  assert.deepEqual(JSON.parse(text), { a: "\\", b: [[1]] });
  assert.equal(exceedsJsonDepth(text, 3), false);
  assert.equal(exceedsJsonDepth(text, 2), true);
});

Deno.test("exceedsJsonDepth refuses very deep input beyond the default limit", () => {
  assert.equal(DEFAULT_MAX_JSON_DEPTH, 64);
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  assert.equal(exceedsJsonDepth(deep, DEFAULT_MAX_JSON_DEPTH), true);
  const atLimit = "[".repeat(64) + "]".repeat(64);
  assert.equal(exceedsJsonDepth(atLimit, DEFAULT_MAX_JSON_DEPTH), false);
});
