/**
 * Unit tests of `server/result_routing.ts` over a real `ClientConnection` whose peer reads only when the
 * test lets it: a client that reads more slowly than its results arrive gets every one of them, in order,
 * instead of being dropped; one owed too many is dropped with `SLOW_CONSUMER`.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { ByteStream } from "../../server/byte_stream.ts";
import { ClientConnection } from "../../server/connection.ts";
import { ResultRouter } from "../../server/result_routing.ts";
import { newServerStats } from "../../server/stats.ts";
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import type { NewTask } from "../../shared/ports.ts";
import { QUEUE_FORMAT, type ResultMessage } from "../../shared/queue_messages.ts";

const decoder = new TextDecoder();
const MAX_OUTPUT_BYTES = 64 * 1024;
/** Each result carries this much output: a handful fill the connection's cap. */
const OUTPUT = "r".repeat(10 * 1024);

/** A peer that takes writes only while `reading`; what it takes is kept as text. */
class SlowPeer implements ByteStream {
  readonly remoteAddr: Deno.Addr = { transport: "tcp", hostname: "127.0.0.1", port: 4000 };
  received = "";
  #reading = false;
  #blocked: (() => void)[] = [];

  /** Starts or stops taking writes. */
  set reading(on: boolean) {
    this.#reading = on;
    if (on) { for (const wake of this.#blocked.splice(0)) wake(); }
  }

  read(): Promise<number | null> {
    return new Promise(() => {}); // the client sends nothing more
  }

  async write(p: Uint8Array): Promise<number> {
    while (!this.#reading) await new Promise<void>((resolve) => this.#blocked.push(resolve));
    // Like a socket: takes at most 16 KiB per write.
    const n = Math.min(p.length, 16 * 1024);
    this.received += decoder.decode(p.subarray(0, n), { stream: true });
    return n;
  }

  close(): void {}

  /** The frames received so far, parsed. */
  frames(): Record<string, unknown>[] {
    return this.received.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
  }
}

function task(taskId: string): NewTask {
  return {
    taskId,
    taskType: "echo",
    priority: 1,
    client: { name: "c", kind: "cli" },
    submittedAt: new Date().toISOString(),
    origin: "s1",
    payload: { message: "x" },
    maxAttempts: 1,
    timeoutMs: 30_000,
    owner: "c",
  };
}

function result(taskId: string): ResultMessage {
  const now = new Date().toISOString();
  return {
    taskId,
    taskType: "echo",
    origin: "s1",
    status: "succeeded",
    output: { message: OUTPUT },
    worker: "w1",
    durationMs: 1,
    startedAt: now,
    finishedAt: now,
    attempt: 1,
  };
}

/** A router and a connection awaiting `count` accepted tasks, none of whose results has come yet. */
async function setUp(count: number, maxOwedResults?: number) {
  const store = new MemoryTaskStore();
  const router = new ResultRouter({
    serverId: "s1",
    store,
    broker: () => undefined,
    stats: newServerStats(),
    maxOutputBytes: MAX_OUTPUT_BYTES,
    ...(maxOwedResults === undefined ? {} : { maxOwedResults }),
  });
  const peer = new SlowPeer();
  const conn = new ClientConnection(peer, {
    maxLineBytes: 1024 * 1024,
    maxOutputBytes: MAX_OUTPUT_BYTES,
    writeTimeoutMs: 60_000,
  });
  const taskIds = Array.from({ length: count }, (_, i) => `t-${String(i).padStart(3, "0")}`);
  for (const taskId of taskIds) {
    await store.create(task(taskId));
    router.accepted(taskId, router.expect(taskId, conn));
  }
  const deliver = (ids: readonly string[]) =>
    router.onResults({
      v: QUEUE_FORMAT,
      forwarded: false,
      started: [],
      retrying: [],
      results: ids.map(result),
    });
  return { router, peer, conn, taskIds, deliver };
}

async function until(what: string, test: () => boolean): Promise<void> {
  for (let i = 0; i < 2_000 && !test(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(test(), `timed out waiting for ${what}`);
}

Deno.test("a client that reads more slowly than its results arrive gets all of them, in order, and is not dropped", async () => {
  // 40 results of 10 KiB: six times the connection's 64 KiB cap.
  const { router, peer, conn, taskIds, deliver } = await setUp(40);
  await deliver(taskIds.slice(0, 20));
  await deliver(taskIds.slice(20));
  assert.ok(!conn.closed, "the connection is still open");
  assert.ok(conn.queuedChars <= MAX_OUTPUT_BYTES, "at most the cap is queued");
  assert.ok(router.owedTo(conn) > 0, "the rest is owed");
  assert.equal(conn.awaiting.size, router.owedTo(conn), "an owed task still awaits its result");
  peer.reading = true;
  await until("every result", () => peer.frames().length === 40);
  const frames = peer.frames();
  assert.deepEqual(frames.map((f) => f.taskId), taskIds, "in the order they came");
  for (const f of frames) {
    assert.equal(f.type, "result");
    assert.equal(f.status, "succeeded");
    assert.deepEqual(f.output, { message: OUTPUT });
  }
  assert.equal(router.owedTo(conn), 0);
  assert.equal(conn.awaiting.size, 0);
  assert.ok(!conn.closed);
  conn.close();
});

Deno.test("results that come while others are owed wait behind them", async () => {
  const { router, peer, conn, taskIds, deliver } = await setUp(30);
  await deliver(taskIds.slice(0, 20));
  assert.ok(router.owedTo(conn) > 0);
  peer.reading = true;
  // Arrives while the owed ones are being sent.
  await deliver(taskIds.slice(20));
  await until("every result", () => peer.frames().length === 30);
  assert.deepEqual(peer.frames().map((f) => f.taskId), taskIds);
  conn.close();
});

Deno.test("a client owed more results than allowed is dropped with SLOW_CONSUMER", async () => {
  const { router, peer, conn, taskIds, deliver } = await setUp(30, 5);
  await deliver(taskIds);
  assert.ok(router.owedTo(conn) > 5);
  peer.reading = true;
  await until("the connection to close", () => conn.closed);
  const frames = peer.frames();
  const last = frames.at(-1)!;
  assert.equal(last.type, "error");
  assert.equal(last.code, "SLOW_CONSUMER");
  assert.match(String(last.message), /más de 5 resultados sin recibir/);
  assert.ok(frames.length < 30, "not every result was sent");
});
