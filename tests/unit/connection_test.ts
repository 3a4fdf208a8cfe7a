/**
 * Unit tests of `server/connection.ts` over an in-memory `ByteStream`: how large a buffer each read waits
 * with (small while the peer is silent, growing while data keeps coming), and that lines of any size still
 * come out whole.
 *
 * @module
 */
import assert from "node:assert/strict";
import process from "node:process";
import type { ByteStream } from "../../server/byte_stream.ts";
import {
  ClientConnection,
  READ_BUFFER_MAX_BYTES,
  READ_BUFFER_MIN_BYTES,
} from "../../server/connection.ts";
import type { Framed } from "../../shared/framing.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A peer whose bytes are fed by the test. A read takes what is available, as much as fits; with nothing
 * available it waits (the connection is idle) until more is fed or the input ends. Every read's buffer size
 * is recorded, and whether it had to wait.
 */
class FakePeer implements ByteStream {
  readonly remoteAddr: Deno.Addr = { transport: "tcp", hostname: "127.0.0.1", port: 4000 };
  /** Each read's buffer size, and whether it found nothing available and had to wait. */
  readonly reads: { size: number; waited: boolean }[] = [];
  #available = new Uint8Array(0);
  #ended = false;
  #wake: (() => void) | undefined;

  /** Makes `text` available to the connection. */
  feed(text: string): void {
    const bytes = encoder.encode(text);
    const next = new Uint8Array(this.#available.length + bytes.length);
    next.set(this.#available);
    next.set(bytes, this.#available.length);
    this.#available = next;
    this.#wakeReader();
  }

  /** Ends the peer's input. */
  end(): void {
    this.#ended = true;
    this.#wakeReader();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Resolves once the connection waits in a read with nothing available. */
  async idle(): Promise<void> {
    while (this.#wake === undefined) await new Promise((resolve) => setTimeout(resolve, 1));
  }

  async read(p: Uint8Array): Promise<number | null> {
    const record = { size: p.length, waited: false };
    this.reads.push(record);
    while (this.#available.length === 0 && !this.#ended) {
      record.waited = true;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    if (this.#available.length === 0) return null;
    const n = Math.min(p.length, this.#available.length);
    p.set(this.#available.subarray(0, n));
    this.#available = this.#available.slice(n);
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return Promise.resolve(p.length);
  }

  close(): void {
    this.end();
  }
}

function serve(peer: FakePeer): { lines: string[]; served: Promise<void> } {
  const lines: string[] = [];
  const conn = new ClientConnection(peer, {
    maxLineBytes: 1024 * 1024,
    maxOutputBytes: 1024 * 1024,
    writeTimeoutMs: 10_000,
  });
  const served = conn.serve((framed: Framed) => {
    if (framed.kind === "line") lines.push(decoder.decode(framed.bytes));
  });
  return { lines, served };
}

Deno.test("an idle connection waits with the smallest read buffer", async () => {
  const peer = new FakePeer();
  const { lines, served } = serve(peer);
  await peer.idle();
  peer.feed('{"type":"hello","id":"h"}\n');
  await peer.idle();
  peer.end();
  await served;
  assert.deepEqual(lines, ['{"type":"hello","id":"h"}']);
  // Every read that had to wait for the peer did so with the smallest buffer.
  const waits = peer.reads.filter((r) => r.waited).map((r) => r.size);
  assert.ok(waits.length >= 2);
  assert.deepEqual(waits, waits.map(() => READ_BUFFER_MIN_BYTES));
});

Deno.test("a connection reads a large line in growing reads, goes back to a small buffer when idle, and reads a large line again", async () => {
  const peer = new FakePeer();
  const { lines, served } = serve(peer);
  const big = "x".repeat(300_000);
  await peer.idle();
  peer.feed(`${big}\n`);
  await peer.idle();
  const first = peer.reads.length;
  // While the line kept coming, the buffers grew up to the largest, never beyond it.
  const growing = peer.reads.map((r) => r.size);
  assert.equal(Math.max(...growing), READ_BUFFER_MAX_BYTES);
  // Once drained, the connection waits small again.
  assert.equal(peer.reads.at(-1)!.size, READ_BUFFER_MIN_BYTES);
  peer.feed(`${big}y\nshort\n`);
  await peer.idle();
  assert.equal(peer.reads.at(-1)!.size, READ_BUFFER_MIN_BYTES);
  // After the small read came back full, the next went on at the busy size, not from the smallest again.
  assert.ok(peer.reads[first]!.size > READ_BUFFER_MIN_BYTES * 4);
  peer.end();
  await served;
  assert.deepEqual(lines.map((l) => l.length), [300_000, 300_001, 5]);
  assert.equal(lines[1], `${big}y`);
  assert.equal(lines[2], "short");
});

Deno.test("a connection's done() resolves whether it is asked before or after the connection closes", async () => {
  const peer = new FakePeer();
  const conn = new ClientConnection(peer, {
    maxLineBytes: 1024,
    maxOutputBytes: 1024,
    writeTimeoutMs: 10_000,
  });
  const early = conn.done();
  const served = conn.serve(() => {});
  await peer.idle();
  peer.end();
  await served;
  await early;
  assert.equal(conn.closed, true);
  await conn.done();
  assert.equal(conn.awaiting.size, 0);
  assert.equal(conn.uploads.size, 0);
});

/** A peer that keeps what is written to it, one entry per write. */
class WritePeer extends FakePeer {
  readonly writes: string[] = [];

  override write(p: Uint8Array): Promise<number> {
    this.writes.push(decoder.decode(p));
    return Promise.resolve(p.length);
  }
}

Deno.test("frames sent in one callback leave in one write before the next turn", async () => {
  const peer = new WritePeer();
  const conn = new ClientConnection(peer, {
    maxLineBytes: 1024,
    maxOutputBytes: 1024 * 1024,
    writeTimeoutMs: 10_000,
  });
  conn.send({ type: "accepted", id: "1", taskId: "t" });
  conn.send({ type: "pong", id: "2" });
  const writtenBeforeNextTurn = await new Promise<string[]>((resolve) =>
    process.nextTick(() => resolve([...peer.writes]))
  );
  assert.equal(writtenBeforeNextTurn.length, 1);
  assert.deepEqual(writtenBeforeNextTurn[0]!.trimEnd().split("\n").map((l) => JSON.parse(l).type), [
    "accepted",
    "pong",
  ]);
  conn.close();
});

Deno.test("a connection stops reading while its unanswered requests pass maxPendingBytes, and goes on once one is answered", async () => {
  const peer = new FakePeer();
  const conn = new ClientConnection(peer, {
    maxLineBytes: 1024 * 1024,
    maxOutputBytes: 1024 * 1024,
    writeTimeoutMs: 10_000,
    maxPendingBytes: 1_000,
  });
  const lines: number[] = [];
  const served = conn.serve((framed: Framed) => {
    if (framed.kind !== "line") return;
    lines.push(framed.bytes.length);
    conn.beginRequest(framed.bytes.length); // unanswered until the test says so
  });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 20));
  await peer.idle();
  peer.feed(`${"x".repeat(599)}\n`.repeat(2)); // 1,198 bytes unanswered: over the 1,000
  await settle();
  assert.deepEqual(lines, [599, 599]);
  assert.ok(conn.readingPaused);
  peer.feed("short\n");
  await settle();
  assert.deepEqual(lines, [599, 599], "the next line waits in the socket");
  assert.equal(
    conn.partialLineFor(Date.now() + 120_000),
    0,
    "a paused connection is not half-sending",
  );
  conn.endRequest(599); // 599 left: under the cap again
  await peer.idle();
  assert.deepEqual(lines, [599, 599, 5]);
  assert.ok(!conn.readingPaused);
  assert.equal(conn.pendingBytes, 604);
  conn.endRequest(599);
  conn.endRequest(5);
  peer.end();
  await served;
});

Deno.test("a connection closed while its reading is paused ends its serve()", async () => {
  const peer = new FakePeer();
  const conn = new ClientConnection(peer, {
    maxLineBytes: 1024 * 1024,
    maxOutputBytes: 1024 * 1024,
    writeTimeoutMs: 10_000,
    maxPendingBytes: 10,
  });
  const served = conn.serve((framed: Framed) => {
    if (framed.kind === "line") conn.beginRequest(framed.bytes.length);
  });
  await peer.idle();
  peer.feed(`${"x".repeat(50)}\n`);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(conn.readingPaused);
  conn.close();
  await served;
  assert.ok(conn.closed);
});
