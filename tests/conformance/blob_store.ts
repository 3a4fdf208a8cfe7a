/**
 * The conformance suite of the {@linkcode BlobStore} port: every implementation registers it once, so the
 * folder store and the S3 store keep one behaviour.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ColmenaError } from "../../shared/errors.ts";
import type { BlobInfo, BlobStore } from "../../shared/ports.ts";

/** A fresh, empty store for one test; disposing it closes the store and removes what the backend kept. */
export interface BlobStoreFixture extends AsyncDisposable {
  readonly store: BlobStore;
}

/** Makes a fresh store; two calls give stores that share nothing (another folder, another key prefix). */
export type MakeBlobStore = () => Promise<BlobStoreFixture>;

/** Options of {@linkcode blobConformance}. */
export interface BlobConformanceOptions {
  /** Registers every test as ignored (its backend is not available). @defaultValue `false` */
  ignore?: boolean;
  /**
   * Whether racing puts of one key leave one of them whole, as S3 and the folder store promise. The local
   * s3rver of the tests writes in place, so racing writers can interleave there (docs/s3.md).
   * @defaultValue `true`
   */
  atomicOverwrites?: boolean;
}

const MIB = 1024 * 1024;

/** Bytes of the streamed object: just over 5 MiB, so S3 stores it as a two-part multipart upload. */
const STREAM_BYTES = 5 * MIB + 4097;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Keys the port forbids; each must be rejected with `TypeError` before the backend is touched. */
const BAD_KEYS = [
  "",
  "../escape",
  "tasks/../../escape",
  "/absolute",
  "tasks//payload",
  "tasks/payload/",
  "./payload",
  "tasks/.hidden",
  "nul\u0000byte",
  "back\\slash",
  "x".repeat(1025),
];

/**
 * Registers the `BlobStore` conformance tests, named `"<name>: …"`. Each test gets its own store from
 * `makeStore` and deletes what it stored before disposing it.
 */
export function blobConformance(
  name: string,
  makeStore: MakeBlobStore,
  options: BlobConformanceOptions = {},
): void {
  const ignore = options.ignore ?? false;

  /** Runs `body` on a fresh store whose keys are deleted afterwards, then disposes the fixture. */
  function test(title: string, body: (store: TrackingStore) => Promise<void>): void {
    Deno.test({ name: `${name}: ${title}`, ignore }, async () => {
      await using fixture = await makeStore();
      const store = new TrackingStore(fixture.store);
      try {
        await body(store);
      } finally {
        await store.cleanUp();
      }
    });
  }

  test("put then get returns the same bytes", async (store) => {
    const data = new Uint8Array(256 * 3).map((_, i) => i % 256);
    await store.put("tasks/one/payload", data);
    assert.deepEqual(await store.get("tasks/one/payload"), data);
    await store.put("tasks/one/texto", encoder.encode("¡hola, colmena! ✓"));
    assert.equal(decoder.decode(await store.get("tasks/one/texto")), "¡hola, colmena! ✓");
  });

  test("an empty object round-trips", async (store) => {
    await store.put("tasks/empty/payload", new Uint8Array());
    assert.equal((await store.get("tasks/empty/payload")).byteLength, 0);
    assert.equal((await readAll(await store.stream("tasks/empty/payload"))).byteLength, 0);
    await store.put("tasks/empty/stream", ReadableStream.from<Uint8Array>([]));
    assert.equal((await store.get("tasks/empty/stream")).byteLength, 0);
  });

  test("put replaces an existing object", async (store) => {
    await store.put("tasks/r/output", encoder.encode("primera versión, más larga que la segunda"));
    await store.put("tasks/r/output", encoder.encode("segunda"));
    assert.equal(decoder.decode(await store.get("tasks/r/output")), "segunda");
    await store.put(
      "tasks/r/output",
      ReadableStream.from([encoder.encode("ter"), encoder.encode("cera")]),
    );
    assert.equal(decoder.decode(await readAll(await store.stream("tasks/r/output"))), "tercera");
  });

  test("a 5 MiB object streams in and out intact", async (store) => {
    const sent = createHash("sha256");
    await store.put("tasks/big/payload", generatedStream(STREAM_BYTES, 42, sent));
    const expected = sent.digest("hex");

    const received = createHash("sha256");
    let length = 0;
    for await (const chunk of await store.stream("tasks/big/payload")) {
      received.update(chunk);
      length += chunk.byteLength;
    }
    assert.equal(length, STREAM_BYTES);
    assert.equal(received.digest("hex"), expected);

    const whole = await store.get("tasks/big/payload");
    assert.equal(whole.byteLength, STREAM_BYTES);
    assert.equal(createHash("sha256").update(whole).digest("hex"), expected);
  });

  test("a stream can be cancelled part way", async (store) => {
    await store.put("tasks/cancel/payload", generatedStream(MIB, 7));
    const reader = (await store.stream("tasks/cancel/payload")).getReader();
    const first = await reader.read();
    assert.equal(first.done, false);
    await reader.cancel();
    // The store is still usable afterwards.
    assert.equal((await store.get("tasks/cancel/payload")).byteLength, MIB);
  });

  test("get and stream of a missing key reject with NOT_FOUND", async (store) => {
    for (
      const read of [
        () => store.get("tasks/none/payload"),
        () => store.stream("tasks/none/payload"),
      ]
    ) {
      await assert.rejects(read, (err: unknown) => {
        assert.ok(err instanceof ColmenaError);
        assert.equal(err.code, "NOT_FOUND");
        assert.match(err.message, /tasks\/none\/payload/);
        return true;
      });
    }
    await store.put("tasks/some/payload", encoder.encode("x"));
    await assert.rejects(() => store.get("tasks/some"), isNotFound);
  });

  test("delete removes objects and ignores missing keys", async (store) => {
    await store.put("tasks/d/payload", encoder.encode("a"));
    await store.put("tasks/d/output", encoder.encode("b"));
    await store.put("tasks/keep/payload", encoder.encode("c"));
    await store.delete(["tasks/d/payload", "tasks/d/output", "tasks/never/payload"]);
    await assert.rejects(() => store.get("tasks/d/payload"), isNotFound);
    await assert.rejects(() => store.get("tasks/d/output"), isNotFound);
    assert.equal(decoder.decode(await store.get("tasks/keep/payload")), "c");
    await store.delete(["tasks/d/payload"]);
    await store.delete([]);
    // A deleted key can be stored again.
    await store.put("tasks/d/payload", encoder.encode("again"));
    assert.equal(decoder.decode(await store.get("tasks/d/payload")), "again");
  });

  test("list gives the objects under a prefix, with when they were written", async (store) => {
    const before = Date.now();
    await store.put("uploads/a", encoder.encode("a"));
    await store.put("uploads/b", encoder.encode("bb"));
    await store.put("uploads/sub/c", encoder.encode("c"));
    await store.put("uploadsX/d", encoder.encode("d"));
    await store.put("tasks/t1/output", encoder.encode("o"));
    const after = Date.now();
    const listed = await Array.fromAsync(store.list("uploads/"));
    assert.deepEqual(listed.map((o) => o.key).sort(), ["uploads/a", "uploads/b", "uploads/sub/c"]);
    for (const { modifiedAt } of listed) {
      // Clocks and the stores' time resolution (seconds in S3): a generous window, not a timing test.
      assert.ok(modifiedAt.getTime() >= before - 5_000 && modifiedAt.getTime() <= after + 5_000);
    }
    assert.deepEqual(
      (await Array.fromAsync(store.list("uploads"))).map((o) => o.key).sort(),
      ["uploads/a", "uploads/b", "uploads/sub/c", "uploadsX/d"],
    );
    assert.deepEqual(
      (await Array.fromAsync(store.list("tasks/t1/"))).map((o) => o.key),
      ["tasks/t1/output"],
    );
  });

  test("list leaves out deleted objects and gives nothing for an unused prefix", async (store) => {
    await store.put("uploads/keep", encoder.encode("k"));
    await store.put("uploads/gone", encoder.encode("g"));
    await store.delete(["uploads/gone"]);
    assert.deepEqual(
      (await Array.fromAsync(store.list("uploads/"))).map((o) => o.key),
      ["uploads/keep"],
    );
    assert.deepEqual(await Array.fromAsync(store.list("nadie/")), []);
  });

  test("stores with different prefixes do not see each other's keys", async (store) => {
    await using otherFixture = await makeStore();
    const other = new TrackingStore(otherFixture.store);
    try {
      await store.put("tasks/same/payload", encoder.encode("mine"));
      await assert.rejects(() => other.get("tasks/same/payload"), isNotFound);
      await other.put("tasks/same/payload", encoder.encode("theirs"));
      assert.equal(decoder.decode(await store.get("tasks/same/payload")), "mine");
      await other.delete(["tasks/same/payload"]);
      assert.equal(decoder.decode(await store.get("tasks/same/payload")), "mine");
    } finally {
      await other.cleanUp();
    }
  });

  test("many concurrent puts all land intact", async (store) => {
    const keys = Array.from({ length: 48 }, (_, i) => `tasks/c${i % 6}/obj-${i}`);
    await Promise.all(
      keys.map((key, i) =>
        i % 2 === 0
          ? store.put(key, encoder.encode(`valor ${key}`))
          : store.put(key, ReadableStream.from([encoder.encode("valor "), encoder.encode(key)]))
      ),
    );
    const values = await Promise.all(keys.map((key) => store.get(key)));
    values.forEach((value, i) => assert.equal(decoder.decode(value), `valor ${keys[i]}`));

    // Racing writers of one key: the last one wins whole, never a mix.
    if (!(options.atomicOverwrites ?? true)) return;
    const candidates = Array.from({ length: 8 }, (_, i) => `${i}`.repeat(10_000 + i));
    await Promise.all(
      candidates.map((text) => store.put("tasks/race/output", encoder.encode(text))),
    );
    assert.ok(candidates.includes(decoder.decode(await store.get("tasks/race/output"))));
  });

  test("invalid keys are rejected with TypeError", async (store) => {
    for (const key of BAD_KEYS) {
      const label = JSON.stringify(key.slice(0, 20));
      await assert.rejects(() => store.put(key, encoder.encode("x")), TypeError, label);
      await assert.rejects(() => store.get(key), TypeError, label);
      await assert.rejects(() => store.stream(key), TypeError, label);
      await assert.rejects(() => store.delete(["tasks/ok/payload", key]), TypeError, label);
    }
    // A stream handed to a refused put is cancelled, not left hanging.
    let cancelled = false;
    const source = new ReadableStream<Uint8Array>({
      cancel() {
        cancelled = true;
      },
    });
    await assert.rejects(() => store.put("../escape", source), TypeError);
    assert.equal(cancelled, true);
  });

  test("a failing source stream rejects the put with its own error and stores nothing", async (store) => {
    const boom = new Error("the client went away");
    let sent = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 3) {
          controller.error(boom);
          return;
        }
        sent++;
        controller.enqueue(new Uint8Array(64 * 1024).fill(sent));
      },
    });
    await assert.rejects(() => store.put("tasks/broken/payload", source), (err) => err === boom);
    await assert.rejects(() => store.get("tasks/broken/payload"), isNotFound);

    // An existing object survives a failed replacement.
    await store.put("tasks/broken/output", encoder.encode("bueno"));
    const failing = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode("malo"));
        controller.error(boom);
      },
    });
    await assert.rejects(() => store.put("tasks/broken/output", failing), (err) => err === boom);
    assert.equal(decoder.decode(await store.get("tasks/broken/output")), "bueno");
  });

  Deno.test(
    { name: `${name}: a closed store rejects later calls with TypeError`, ignore },
    async () => {
      await using fixture = await makeStore();
      await fixture.store.close();
      await assert.rejects(
        () => fixture.store.put("tasks/late/payload", encoder.encode("x")),
        TypeError,
      );
      await assert.rejects(() => fixture.store.get("tasks/late/payload"), TypeError);
    },
  );
}

function isNotFound(err: unknown): boolean {
  return err instanceof ColmenaError && err.code === "NOT_FOUND";
}

/**
 * A pseudo-random stream of `size` bytes in chunks of uneven sizes (1 byte to 96 KiB), fed to `hash` as it is
 * read; made chunk by chunk, never whole.
 */
function generatedStream(
  size: number,
  seed: number,
  hash?: ReturnType<typeof createHash>,
): ReadableStream<Uint8Array> {
  let state = seed >>> 0 || 1;
  const next = (): number => {
    // xorshift32
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  let left = size;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left === 0) {
        controller.close();
        return;
      }
      const length = Math.min(left, 1 + (next() % (96 * 1024)));
      const chunk = new Uint8Array(length);
      for (let i = 0; i < length; i++) chunk[i] = next() & 0xff;
      hash?.update(chunk);
      left -= length;
      controller.enqueue(chunk);
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** Passes calls through and remembers the keys written, so a test can delete them at its end. */
class TrackingStore implements BlobStore {
  readonly #store: BlobStore;
  readonly #written = new Set<string>();

  constructor(store: BlobStore) {
    this.#store = store;
  }

  put(key: string, data: Uint8Array | ReadableStream<Uint8Array>): Promise<void> {
    this.#written.add(key);
    return this.#store.put(key, data);
  }

  get(key: string): Promise<Uint8Array> {
    return this.#store.get(key);
  }

  stream(key: string): Promise<ReadableStream<Uint8Array>> {
    return this.#store.stream(key);
  }

  delete(keys: readonly string[]): Promise<void> {
    return this.#store.delete(keys);
  }

  list(prefix: string): AsyncIterable<BlobInfo> {
    return this.#store.list(prefix);
  }

  close(): Promise<void> {
    return this.#store.close();
  }

  /** Deletes every valid key written through this wrapper. */
  async cleanUp(): Promise<void> {
    const keys = [...this.#written].filter((key) => !BAD_KEYS.includes(key));
    if (keys.length > 0) await this.#store.delete(keys);
  }
}
