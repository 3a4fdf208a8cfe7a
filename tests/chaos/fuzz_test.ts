/**
 * Chaos: a seeded, reproducible fuzzer against the real server. Several connections send random bytes,
 * truncated and oversized lines, deep JSON, invalid UTF-8, and well-formed frames with wrong fields, split
 * into chunks at random places. The server must stay up, answer every complete non-blank line exactly once,
 * never answer `INTERNAL`, and a well-behaved `TaskClient` on its own connection must see no failure meanwhile.
 *
 * The seed is printed; `COLMENA_CAOS_SEMILLA=<seed>` replays a run.
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { report, scaled, tempDir, waitUntil } from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();

const MAX_LINE_BYTES = 8_192;
const encoder = new TextEncoder();

/** mulberry32: a small, fast, seedable PRNG; the same seed gives the same inputs. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Generates fuzz inputs from one random source. */
class _Fuzzer {
  readonly #random: () => number;
  #ids = 0;

  constructor(random: () => number) {
    this.#random = random;
  }

  int(max: number): number {
    return Math.floor(this.#random() * max);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  #id(): string {
    return `f${this.#ids++}`;
  }

  #uuid(): string {
    const hex = Array.from({ length: 32 }, () => this.int(16).toString(16)).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${
      hex.slice(20)
    }`;
  }

  /** A well-formed request of every type the protocol has. */
  frame(): Record<string, unknown> {
    const id = this.#id();
    switch (this.int(12)) {
      case 0:
        return { type: "hello", id, client: { name: "fuzz", kind: "web" }, protocol: 1 };
      case 1:
        return { type: "submit", id, task: { type: "echo", payload: { message: this.int(1000) } } };
      case 2:
        return {
          type: "submit",
          id,
          task: { type: "hash", payload: { data: "x", iterations: 1 + this.int(50) } },
          options: { priority: this.int(10), maxAttempts: 1 + this.int(3), timeoutMs: 5_000 },
        };
      case 3:
        return { type: "status", id, taskId: this.#uuid() };
      case 4:
        return { type: "cancel", id, taskId: this.#uuid() };
      case 5:
        return { type: "watch", id, taskIds: [this.#uuid(), this.#uuid()] };
      case 6:
        return { type: "list", id, filter: { statuses: ["failed"], taskType: "echo" }, limit: 3 };
      case 7:
        return { type: "workers", id };
      case 8:
        return { type: "dlq", id, action: "list", limit: 1 };
      case 9:
        return { type: "upload", id, data: "aG9sYQ==", last: true };
      case 10:
        return { type: "download", id, ref: `tasks/${this.#uuid()}/output` };
      default:
        return { type: "ping", id };
    }
  }

  /** A value of the wrong type, range or shape; `\u0000RAW:` marks a token written into the JSON as is. */
  #weird(): unknown {
    return this.pick<() => unknown>([
      () => null,
      () => -1,
      () => 1.5,
      () => "\u0000RAW:1e999",
      () => "\u0000RAW:-0",
      () => 2 ** 53 + 1,
      () => "",
      () => "x".repeat(this.int(600)),
      () => "\ud800 solo",
      () => "ñ🐝\u0000\u202e",
      () => true,
      () => [],
      () => [1, "2", null],
      () => ({}),
      () => ({ __proto__: { polluted: true }, constructor: "x" }),
      () => this.#uuid(),
      () => "../../etc/passwd",
      () => "tasks/../uploads/x/output",
      () => "c3VwZXI=",
      () => "not base64 !!",
      () => ["queued", "nope"],
      () => "2026-13-45T99:99:99Z",
    ])();
  }

  /** A well-formed frame with one field replaced, removed or added. */
  mutated(): Record<string, unknown> {
    const frame = this.frame();
    const paths: string[][] = [];
    const walk = (value: unknown, path: string[]) => {
      if (typeof value !== "object" || value === null) return;
      for (const [key, child] of Object.entries(value)) {
        paths.push([...path, key]);
        walk(child, [...path, key]);
      }
    };
    walk(frame, []);
    const path = this.pick(paths);
    let parent: Record<string, unknown> = frame;
    for (const key of path.slice(0, -1)) parent = parent[key] as Record<string, unknown>;
    const last = path.at(-1)!;
    switch (this.int(4)) {
      case 0:
        delete parent[last];
        break;
      case 1:
        parent[`extra${this.int(9)}`] = this.#weird();
        break;
      default:
        parent[last] = this.#weird();
    }
    return frame;
  }

  /** A JSON line, with the raw tokens put back. */
  line(frame: unknown, ending = "\n"): Uint8Array {
    const text = JSON.stringify(frame).replace(/"\\u0000RAW:([^"]*)"/g, "$1");
    return encoder.encode(text + ending);
  }

  /** One input: a complete line, or a piece of one. */
  input(): Uint8Array {
    switch (this.int(14)) {
      case 0: {
        // Random bytes, sometimes biased towards JSON punctuation; may hold line breaks of their own.
        const json = this.int(2) === 0;
        const alphabet = encoder.encode('{}[]":,\\0123456789abcdeftrulns \r\n');
        return Uint8Array.from(
          { length: 1 + this.int(300) },
          () => json ? alphabet[this.int(alphabet.length)]! : this.int(256),
        );
      }
      case 1: {
        // A frame cut short: it runs into whatever comes next.
        const whole = this.line(this.frame());
        return whole.subarray(0, this.int(whole.length - 1));
      }
      case 2: {
        // Over the line cap: padding inside a string, or raw bytes.
        const size = MAX_LINE_BYTES + 1 + this.int(3 * MAX_LINE_BYTES);
        if (this.int(2) === 0) {
          return encoder.encode(`{"type":"ping","id":"${"p".repeat(size)}"}\n`);
        }
        const bytes = Uint8Array.from({ length: size }, () => 0x20 + this.int(90));
        bytes[size - 1] = 0x0a;
        return bytes;
      }
      case 3: {
        // Deep nesting, bare or inside a valid envelope.
        const depth = 60 + this.int(3_000);
        const [open, close] = this.pick([["[", "]"], ['{"a":', "}"]]);
        const deep = open!.repeat(depth) + "1" + close!.repeat(depth);
        if (this.int(2) === 0) return encoder.encode(deep + "\n");
        return encoder.encode(
          `{"type":"submit","id":"${this.#id()}","task":{"type":"echo","payload":{"message":${deep}}}}\n`,
        );
      }
      case 4: {
        // Invalid UTF-8 inside an otherwise valid frame.
        const text = JSON.stringify({ type: "ping", id: this.#id(), note: "AAAA" });
        const at = text.indexOf("AAAA");
        const bad = this.pick([[0xff], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [
          0xf8,
          0x88,
          0x80,
          0x80,
          0x80,
        ]]);
        return new Uint8Array([
          ...encoder.encode(text.slice(0, at)),
          ...bad,
          ...encoder.encode(text.slice(at) + "\n"),
        ]);
      }
      case 5:
      case 6:
      case 7:
      case 8:
        return this.line(this.mutated(), this.int(5) === 0 ? "\r\n" : "\n");
      case 9:
        return this.line(this.frame(), this.int(5) === 0 ? "\r\n" : "\n");
      case 10:
        return encoder.encode(this.pick(["\n", "\r\n", " \n", "\r\r\n", "\t\n", "\ufeff{}\n"]));
      case 11:
        return encoder.encode(
          this.pick(["null\n", "[]\n", '"ping"\n', "1\n", "{}\n", '{"type":null}\n']),
        );
      case 12:
        // JSON that is valid but not a request: lone surrogates, duplicate keys, odd numbers.
        return encoder.encode(
          this.pick([
            `{"type":"ping","id":"\\ud800"}\n`,
            `{"type":"ping","id":"a","id":"b"}\n`,
            `{"type":"submit","id":"n","task":{"type":"numbers","payload":{"numbers":[1e308,1e308]}}}\n`,
            `{"type":"list","id":"c","cursor":"${"z".repeat(400)}"}\n`,
            `{"type":"list","id":"d","cursor":"eyJ4IjoxfQ"}\n`,
          ]),
        );
      default:
        return this.line({ type: "ping", id: this.#id() });
    }
  }
}

/** Complete lines that are not blank (nothing, or one `\r`): the server answers each exactly once. */
function answerableLines(stream: Uint8Array): number {
  let count = 0;
  let start = 0;
  for (let i = 0; i < stream.length; i++) {
    if (stream[i] !== 0x0a) continue;
    let length = i - start;
    if (length > 0 && stream[i - 1] === 0x0d) length--;
    if (length > 0 || i - start > MAX_LINE_BYTES) count++;
    start = i + 1;
  }
  return count;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

Deno.test({
  name:
    "a seeded fuzzer (10,000 inputs) never crashes the server, which answers every complete line once while a well-behaved client sees no failure",
  ...rabbit,
  async fn() {
    const started = Date.now();
    const seedText = Deno.env.get("COLMENA_CAOS_SEMILLA");
    const seed = seedText !== undefined && seedText !== ""
      ? Number(seedText)
      : Math.floor(Math.random() * 2 ** 31);
    assert.ok(Number.isInteger(seed), `COLMENA_CAOS_SEMILLA must be an integer, got "${seedText}"`);
    // deno-lint-ignore no-console
    console.log(`semilla del fuzzer: ${seed} (repetir con COLMENA_CAOS_SEMILLA=${seed})`);
    const fuzzer = new _Fuzzer(prng(seed));
    const total = scaled(10_000);
    const connections = 10;

    await using queues = uniqueQueues("fuzz");
    await using data = await tempDir();
    await using server = await startServer(queues, [
      "--data-dir",
      data.path,
      "--max-line-bytes",
      String(MAX_LINE_BYTES),
    ]);
    await using _worker = await startWorker("w1", queues, ["--quiet"]);
    await using good = new TaskClient({ host: "127.0.0.1", port: server.port, reconnectForMs: 0 });

    // The well-behaved client works all along the fuzzing.
    let fuzzing = true;
    let goodDone = 0;
    const goodFailures: unknown[] = [];
    const goodLoop = (async () => {
      for (let i = 0; fuzzing; i++) {
        try {
          const out = await good.run("echo", { message: { i, texto: "ñandú 🐝" } });
          assert.deepEqual(out, { message: { i, texto: "ñandú 🐝" } });
          await good.ping();
          goodDone++;
        } catch (err) {
          goodFailures.push(err);
        }
      }
    })();

    await using stack = new AsyncDisposableStack();
    const clients: RawClient[] = [];
    for (let c = 0; c < connections; c++) {
      clients.push(stack.use(await RawClient.connect(server.port)));
    }
    const expected: number[] = [];
    let bytesSent = 0;
    await Promise.all(clients.map(async (client, c) => {
      const count = Math.floor(total / connections) + (c < total % connections ? 1 : 0);
      const stream = concat(Array.from({ length: count }, () => fuzzer.input()));
      expected[c] = answerableLines(stream);
      bytesSent += stream.length;
      // Written in chunks cut at random places: mid-character, mid-line, many lines at once. Each
      // connection cuts with its own generator, so that the run does not depend on how they interleave.
      const chunker = new _Fuzzer(prng(seed + 1 + c));
      for (let offset = 0; offset < stream.length;) {
        const size = 1 + chunker.int(chunker.int(4) === 0 ? 64 : 8_192);
        await client.sendRaw(stream.subarray(offset, offset + size));
        offset += size;
        if (chunker.int(8) === 0) await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }));
    const replies = (client: RawClient) => client.frames.filter((f) => f.type !== "result").length;
    await waitUntil(
      () => clients.every((client, c) => replies(client) >= expected[c]!),
      `an answer to every line (seed ${seed})`,
      60_000,
    ).catch((err) => {
      const got = clients.map(replies);
      throw new Error(`${err.message}: expected ${expected}, got ${got}`, { cause: err });
    });
    // A little longer, to catch answers beyond one per line.
    await new Promise((resolve) => setTimeout(resolve, 300));
    fuzzing = false;
    await goodLoop;

    const codes = new Map<string, number>();
    for (const f of clients.flatMap((c) => c.frames)) {
      const key = f.type === "error" ? String(f.code) : f.type;
      codes.set(key, (codes.get(key) ?? 0) + 1);
    }
    const internal = clients.flatMap((c) => c.frames).filter((f) => f.code === "INTERNAL");
    const exited = await Promise.race([
      server.status.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 50)),
    ]);
    await report({
      escenario: "fuzzer sembrado contra el servidor",
      tareas: total,
      fallos: `${total} entradas malformadas o extremas (${
        (bytesSent / 1_048_576).toFixed(1)
      } MiB) por ${connections} conexiones, semilla ${seed}`,
      resultados: clients.reduce((n, c) => n + replies(c), 0),
      duplicadosEntregados: 0,
      perdidas: expected.reduce((n, e, c) => n + Math.max(0, e - replies(clients[c]!)), 0),
      ms: Date.now() - started,
      notas:
        `${goodDone} peticiones del cliente correcto, ${goodFailures.length} fallidas; respuestas: ${
          [...codes].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, n]) => `${k} ${n}`).join(", ")
        }, …`,
    });
    assert.equal(exited, false, `the server is still running (seed ${seed})`);
    assert.deepEqual(clients.map(replies), expected, `one answer per complete line (seed ${seed})`);
    assert.deepEqual(internal, [], `no INTERNAL answers (seed ${seed})`);
    assert.deepEqual(goodFailures, [], `the well-behaved client saw no failure (seed ${seed})`);
    assert.ok(goodDone > 0);
    for (const code of ["INVALID_JSON", "INVALID_MESSAGE", "FRAME_TOO_LARGE", "TOO_DEEP"]) {
      assert.ok((codes.get(code) ?? 0) > 0, `the inputs reached ${code} (seed ${seed})`);
    }
    assert.ok(clients.every((c) => !c.closedByPeer), "no fuzzing connection was dropped");
  },
});
