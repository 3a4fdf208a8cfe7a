/**
 * One client's connection (plain TCP or TLS, through a `ByteStream`): framed reading, and writing with a byte cap and a deadline.
 *
 * Frames to send are queued and written together once per turn. A client that does not read its replies is
 * dropped with `SLOW_CONSUMER` once more than `maxOutputBytes` wait for it, or when one write takes longer
 * than `writeTimeoutMs`; memory per connection stays bounded either way.
 *
 * A `ClientConnection` is the one owner of per-connection state: who the client is, its rate bucket, its
 * unanswered requests, the tasks whose result it awaits, its uploads under way and its queue of `watch`es.
 * Server-wide maps (the result router's push targets, by task id) only point at a connection; whoever adds
 * to them adds the task id to `awaiting` too, so that the server can clean them up when the connection ends.
 *
 * A server may hold many thousands of idle connections, so one costs as little as it can while it waits: its
 * pending read has a small buffer, and its sets, its line splitter and its `done()` promise are only made
 * once something needs them.
 *
 * @module
 */
import process from "node:process";
import { ColmenaError } from "../shared/errors.ts";
import { type Framed, LineSplitter } from "../shared/framing.ts";
import type { ByteStream } from "./byte_stream.ts";
import * as log from "../shared/log.ts";
import { encodeFrame, type Reply } from "../shared/protocol.ts";
import type { ClientKind } from "../shared/protocol.ts";
import { localPrincipal, type Principal } from "./principal.ts";
import type { Upload } from "./transfers.ts";

/** Who the client on a connection is: what `hello` said, or the defaults. */
export interface ClientIdentity {
  name: string;
  kind: ClientKind;
}

/** Limits of one connection. */
export interface ConnectionLimits {
  maxLineBytes: number;
  maxOutputBytes: number;
  writeTimeoutMs: number;
  /**
   * Bytes of requests received and not yet answered past which the connection stops reading until some are
   * answered (TCP backpressure on the client). @defaultValue unlimited
   */
  maxPendingBytes?: number;
}

const encoder = new TextEncoder();
/**
 * Read buffers: a waiting read holds its buffer for as long as the peer stays silent. So once a read has
 * drained the socket (it came back short), the next one waits with the smallest buffer, which holds a
 * typical request; if that one comes back full, more is arriving and the reads go on at the busy size. The
 * busy size doubles after a full read, up to the largest, and halves after a read under a quarter full.
 */
export const READ_BUFFER_MIN_BYTES = 256;
/** The largest read buffer. */
export const READ_BUFFER_MAX_BYTES = 64 * 1024;
/** The busy size a connection starts with. */
const READ_BUFFER_BUSY_START_BYTES = 1024;
/** How long a goodbye `error` frame may take to be written before the socket closes anyway. */
const GOODBYE_WAIT_MS = 1_000;
let nextConnectionId = 1;
/** Shared by every connection until its `hello`, which replaces (never mutates) them. */
const ANONYMOUS_CLIENT: ClientIdentity = Object.freeze({ name: "anonimo", kind: "cli" });
const ANONYMOUS_PRINCIPAL: Principal = Object.freeze(localPrincipal("anonimo"));
const SETTLED: Promise<void> = Promise.resolve();

/** A client connection; `serve()` reads frames until the peer goes away. */
export class ClientConnection {
  /** A number unique within this server process, for logs. */
  readonly id = nextConnectionId++;
  /** Who the client is; `hello` fills it. Later, authentication fills it too. */
  client: ClientIdentity = ANONYMOUS_CLIENT;
  /**
   * Who the connection acts for: ownership, quotas and idempotency key on it. Without tokens it follows the
   * `hello` name with the `admin` role (see `principal.ts`).
   */
  principal: Principal = ANONYMOUS_PRINCIPAL;
  /**
   * Whether {@linkcode principal} was established by authentication (a token in `hello`, or a TLS client
   * certificate): a later `hello` never replaces it.
   */
  authenticated = false;
  /**
   * Set while a failed authentication is being answered: the frames that follow are ignored, unanswered,
   * until the connection closes.
   */
  refusing = false;
  /** When the connection was accepted (`Date.now()`), for the authentication deadline. */
  readonly openedAt: number = Date.now();
  /**
   * The longest first line (the `hello`) when the server requires authentication (tokens configured);
   * `undefined` when it does not. A longer one closes the connection with `FRAME_TOO_LARGE` as soon as
   * its bytes pass the cap, newline or not. Later lines have the configured cap: before authentication
   * the first line decides (a `hello` that authenticates, or a refusal that ignores what follows), and a
   * client may pipeline large requests right after its `hello`.
   */
  lineCapBeforeAuth: number | undefined;
  /** Bytes of the first non-blank line so far, while it is being checked against the cap before auth. */
  #firstLineBytes = 0;
  #firstLineDone = false;

  #awaiting: Set<string> | undefined;
  /**
   * Called after each write to the socket completes while the connection is open: the result router uses it
   * to send results it held back while this connection's output was high (see `result_routing.ts`).
   */
  onWritten: (() => void) | undefined;
  #uploads: Map<string, Upload> | undefined;
  /** The last `watch` of this connection, which the next one waits for. */
  lastWatch: Promise<void> = SETTLED;
  /** The client kind every `hello` on this connection is held to (`web` over the WebSocket bridge). */
  fixedKind: ClientKind | undefined;
  readonly #conn: ByteStream;
  readonly #limits: ConnectionLimits;
  #out: string[] = [];
  #outChars = 0;
  /** Characters of the write under way. */
  #inFlightChars = 0;
  /** A goodbye is queued: nothing more is sent, and the socket closes once it is written. */
  #dropping = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #writing = false;
  #writeStartedAt = 0;
  #closed = false;
  /** Whether the connection is closed and its last write has ended. */
  #finished = false;
  #done: PromiseWithResolvers<void> | undefined;

  constructor(conn: ByteStream, limits: ConnectionLimits) {
    this.#conn = conn;
    this.#limits = limits;
  }

  /** Tasks submitted or watched on this connection whose result has not been pushed yet. */
  get awaiting(): Set<string> {
    return this.#awaiting ??= new Set();
  }

  /** Uploads under way on this connection, by id. */
  get uploads(): Map<string, Upload> {
    return this.#uploads ??= new Map();
  }

  /** Whether the connection is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The peer's host (its IP address), for the per-address connection cap. */
  get address(): string {
    const addr = this.#conn.remoteAddr;
    return addr.transport === "tcp" || addr.transport === "udp" ? addr.hostname : addr.transport;
  }

  /** The peer's address, for logs. */
  get remote(): string {
    const addr = this.#conn.remoteAddr;
    return addr.transport === "tcp" ? `${addr.hostname}:${addr.port}` : addr.transport;
  }

  /** Resolves once the connection is closed and its last write has ended. */
  done(): Promise<void> {
    if (this.#finished) return SETTLED;
    this.#done ??= Promise.withResolvers<void>();
    return this.#done.promise;
  }

  #finish(): void {
    this.#finished = true;
    this.#done?.resolve();
  }

  #partialSince = 0;
  #lastFrameAt = Date.now();
  #pending = 0;
  /** Line bytes of the requests received and not yet answered. */
  #pendingBytes = 0;
  /** Set while reading waits for answers (over `maxPendingBytes`): resumes it. */
  #resumeReading: (() => void) | undefined;
  #inputEnded = false;
  #tokens = -1;
  #tokensAt = 0;

  /**
   * Takes `cost` request tokens (one per request, one per task of a batch) from the connection's bucket
   * (`rate` per second, at most `burst` saved); `false` when there are not enough.
   */
  takeToken(rate: number, burst: number, cost = 1): boolean {
    const now = performance.now();
    if (this.#tokens < 0) this.#tokens = burst;
    else this.#tokens = Math.min(burst, this.#tokens + ((now - this.#tokensAt) * rate) / 1000);
    this.#tokensAt = now;
    // A request dearer than the whole burst costs the burst, or it could never pass.
    const price = Math.min(cost, burst);
    if (this.#tokens < price) return false;
    this.#tokens -= price;
    return true;
  }

  /** Requests received and not yet answered (submits waiting for the broker's confirm, queries…). */
  get pending(): number {
    return this.#pending;
  }

  /** Line bytes of the requests received and not yet answered. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Notes a request of `bytes` (its line) admitted and not yet answered. */
  beginRequest(bytes = 0): void {
    this.#pending++;
    this.#pendingBytes += bytes;
  }

  /**
   * Notes a request of `bytes` answered (its reply already queued); reading goes on once the unanswered
   * bytes are back under `maxPendingBytes`. On a half-closed connection the last answer closes it, once
   * what is queued has been written.
   */
  endRequest(bytes = 0): void {
    this.#pending--;
    this.#pendingBytes -= bytes;
    if (this.#resumeReading !== undefined && !this.#overPendingBytes()) this.#resume();
    if (this.#inputEnded && this.#pending === 0) this.#closeSoon();
  }

  #overPendingBytes(): boolean {
    return this.#pendingBytes > (this.#limits.maxPendingBytes ?? Infinity);
  }

  #resume(): void {
    const resume = this.#resumeReading;
    this.#resumeReading = undefined;
    resume?.();
  }

  /** Whether reading waits for answers to requests already received (over `maxPendingBytes`). */
  get readingPaused(): boolean {
    return this.#resumeReading !== undefined;
  }

  /** Milliseconds since the last complete line that was not blank. */
  idleFor(now: number): number {
    return now - this.#lastFrameAt;
  }

  /**
   * Milliseconds since the first byte of a line that is still incomplete, or 0; and 0 while reading waits
   * for answers (the rest of the line may be waiting in the socket).
   */
  partialLineFor(now: number): number {
    return this.#partialSince === 0 || this.#resumeReading !== undefined
      ? 0
      : now - this.#partialSince;
  }

  /**
   * Reads frames and hands each to `onFrame` until the peer stops sending or the connection is dropped;
   * resolves once the connection is closed. A peer that only shuts down its write side (half-close) still
   * gets every request it sent answered: the connection closes after the last answer is written.
   */
  async serve(onFrame: (framed: Framed) => void): Promise<void> {
    this.#onFrame = onFrame;
    // A plain read loop, not a stream pipeline: an idle connection holds only its small pending read.
    // Reaching the end of input does not close the socket (unlike `conn.readable`), so replies can still
    // be written to a peer that half-closed.
    let busy = READ_BUFFER_BUSY_START_BYTES;
    let size = READ_BUFFER_MIN_BYTES;
    try {
      while (!this.#closed) {
        if (this.#overPendingBytes()) {
          // Backpressure: what the client sends next waits in the socket until earlier requests are answered.
          await new Promise<void>((resolve) => this.#resumeReading = resolve);
          if (this.#closed) break;
          // A line cut at the pause counts its wait for the rest from now.
          if (this.#partialSince !== 0) this.#partialSince = Date.now();
        }
        const buffer = new Uint8Array(size);
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        if (n === size) {
          // More is probably waiting: go on at the busy size, larger if the busy size was just filled.
          if (size >= busy) busy = Math.min(busy * 2, READ_BUFFER_MAX_BYTES);
          size = busy;
        } else {
          // The socket is drained: the peer paused, maybe for long, so wait small.
          if (n < size / 4 && size === busy) {
            busy = Math.max(busy / 2, READ_BUFFER_BUSY_START_BYTES);
          }
          size = READ_BUFFER_MIN_BYTES;
        }
        this.#take(buffer.subarray(0, n));
      }
    } catch (err) {
      if (!this.#closed && !isDisconnect(err)) {
        log.error(`Error leyendo de la conexión ${this.id} (${this.remote})`, err);
      }
    } finally {
      // The peer sent its last byte (or the read failed): a partial line left is dropped, not awaited.
      this.#inputEnded = true;
      this.#partialSince = 0;
      this.#splitter = undefined;
      if (this.#pending === 0) this.#closeSoon();
    }
    await this.done();
  }

  #onFrame: ((framed: Framed) => void) | undefined;
  /** Made with the first bytes, with its `#emit`: a connection that never sends any needs neither. */
  #splitter: LineSplitter | undefined;
  #emit: ((framed: Framed) => void) | undefined;

  #emitFrame(framed: Framed): void {
    if (this.#closed) return;
    // A blank line is a harmless no-op, not activity: it does not keep an idle connection open.
    if (framed.kind === "too_large" || framed.bytes.length > 0) this.#lastFrameAt = Date.now();
    this.#onFrame?.(framed);
  }

  /** Frames one chunk read from the socket. */
  #take(chunk: Uint8Array): void {
    // Where the unfinished line, if any, began: the bytes after the chunk's last newline.
    const lastNewline = chunk.lastIndexOf(0x0a);
    if (lastNewline === chunk.length - 1) this.#partialSince = 0;
    else if (lastNewline >= 0 || this.#partialSince === 0) {
      this.#partialSince = Date.now();
    }
    if (!this.#firstLineDone && this.awaitingAuth) this.#checkFirstLine(chunk);
    if (this.#closed) return;
    this.#splitter ??= new LineSplitter(this.#limits.maxLineBytes);
    this.#emit ??= (framed) => this.#emitFrame(framed);
    this.#splitter.push(chunk, this.#emit);
  }

  /** Whether the server requires authentication and this connection has not authenticated yet. */
  get awaitingAuth(): boolean {
    return this.lineCapBeforeAuth !== undefined && !this.authenticated;
  }

  /** The longest line accepted now: small for the first line before authentication, when required. */
  get lineCap(): number {
    const before = this.lineCapBeforeAuth;
    return before === undefined || !this.awaitingAuth || this.#firstLineDone
      ? this.#limits.maxLineBytes
      : Math.min(before, this.#limits.maxLineBytes);
  }

  /** Counts the bytes of the first non-blank line; refuses the connection once they pass the cap. */
  #checkFirstLine(chunk: Uint8Array): void {
    const cap = this.lineCap;
    let start = 0;
    while (start <= chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      // A "\r" before the newline of a blank line does not make it a line.
      const blank = nl !== -1 && this.#firstLineBytes === 0 &&
        (end === start || (end === start + 1 && chunk[start] === 0x0d));
      this.#firstLineBytes += end - start;
      if (this.#firstLineBytes > cap) {
        this.refuse(
          null,
          new ColmenaError("FRAME_TOO_LARGE", {
            message: `La primera línea supera el máximo de ${cap} bytes antes del hello`,
          }),
        );
        return;
      }
      if (nl === -1) return;
      if (!blank) {
        this.#firstLineDone = true;
        return;
      }
      this.#firstLineBytes = 0;
      start = nl + 1;
    }
  }

  /**
   * Answers request `id` with `error` and closes the connection once that answer is written (or after a
   * second); nothing else is sent.
   */
  refuse(id: string | null, error: ColmenaError): void {
    if (this.#closed || this.#dropping) return;
    this.refusing = true;
    this.#out = [];
    this.#outChars = 0;
    this.send({ type: "error", id, ...error.toWire() });
    this.#dropping = true;
    log.warn(`Se cierra la conexión ${this.id} (${this.remote}): ${error.code}`);
    this.#afterWrite = () => this.close();
    clearTimeout(this.#closeTimer);
    this.#closeTimer = setTimeout(() => this.close(), GOODBYE_WAIT_MS);
  }

  /** Queues one frame; it is written with the others of this turn. Ignored once closed. */
  send(frame: Reply): void {
    if (this.#closed || this.#dropping) return;
    const line = encodeFrame(frame);
    this.#out.push(line);
    this.#outChars += line.length;
    if (this.#outChars + this.#inFlightChars > this.#limits.maxOutputBytes) {
      this.drop(new ColmenaError("SLOW_CONSUMER"));
      return;
    }
    this.#startWriting();
  }

  #startWriting(): void {
    if (!this.#writing) {
      this.#writing = true;
      // Once this callback and its microtasks are done: what they send (an `accepted` and its result) goes in
      // one write, without waiting a turn; what comes while that write is under way goes in the next one.
      process.nextTick(() => this.#writeLoop());
    }
  }

  /** Answers request `id` (null when unknown) with an `error` frame. */
  sendError(id: string | null, error: ColmenaError): void {
    this.send({ type: "error", id, ...error.toWire() });
  }

  /**
   * Closes the connection because of `error`: the queued output is discarded and the error frame (id null)
   * is the last thing written, even past `maxOutputBytes`, right after the write under way if there is one,
   * so that it never splits another frame. Nothing is sent after it; the socket closes once it is written,
   * or after a second if the peer does not take it.
   */
  drop(error: ColmenaError): void {
    if (this.#closed || this.#dropping) return;
    this.#dropping = true;
    log.warn(`Se cierra la conexión ${this.id} (${this.remote}): ${error.code}`);
    const goodbye = encodeFrame({ type: "error", id: null, ...error.toWire() });
    this.#out = [goodbye];
    this.#outChars = goodbye.length;
    this.#afterWrite = () => this.close();
    this.#closeTimer = setTimeout(() => this.close(), GOODBYE_WAIT_MS);
    this.#startWriting();
  }

  /**
   * Says goodbye with `error` (id null) after what is already queued, then closes; waits at most
   * `timeoutMs` for the peer to take it.
   */
  end(error: ColmenaError, timeoutMs = GOODBYE_WAIT_MS): void {
    if (this.#closed || this.#dropping) return;
    this.send({ type: "error", id: null, ...error.toWire() });
    if (this.#dropping) return; // the goodbye itself went over the cap: drop() took over
    this.#afterWrite = () => this.close();
    clearTimeout(this.#closeTimer);
    this.#closeTimer = setTimeout(() => this.close(), timeoutMs);
  }

  /** Characters queued or being written, and not yet written. */
  get queuedChars(): number {
    return this.#outChars + this.#inFlightChars;
  }

  /** Resolves once everything queued so far has been written (or the connection closed). */
  async flushed(): Promise<void> {
    while (!this.#closed && (this.#writing || this.#out.length > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Whether a write has been blocked for longer than the write timeout (checked by the server's sweeper). */
  writeStalled(now: number): boolean {
    return this.#writing && this.#writeStartedAt > 0 &&
      now - this.#writeStartedAt > this.#limits.writeTimeoutMs;
  }

  /** Closes the socket at once; queued output is lost. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#resume();
    clearTimeout(this.#closeTimer);
    this.#out = [];
    this.#outChars = 0;
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
    if (!this.#writing) this.#finish();
  }

  #closeSoon(): void {
    // Let what is queued go out before closing, unless the writer is stuck.
    if (this.#closed) return;
    if (!this.#writing && this.#out.length === 0) this.close();
    else this.#afterWrite = () => this.close();
  }

  #afterWrite: (() => void) | undefined;

  async #writeLoop(): Promise<void> {
    try {
      while (this.#out.length > 0 && !this.#closed) {
        const text = this.#out.length === 1 ? this.#out[0]! : this.#out.join("");
        this.#inFlightChars = this.#outChars;
        this.#out = [];
        this.#outChars = 0;
        const bytes = encoder.encode(text);
        this.#writeStartedAt = Date.now();
        let offset = 0;
        while (offset < bytes.length) {
          offset += await this.#conn.write(bytes.subarray(offset));
        }
        this.#writeStartedAt = 0;
        this.#inFlightChars = 0;
        if (this.onWritten !== undefined && !this.#closed && !this.#dropping) this.onWritten();
      }
    } catch (err) {
      if (!this.#closed && !isDisconnect(err)) {
        log.error(`Error escribiendo en la conexión ${this.id}`, err);
      }
      this.close();
    } finally {
      this.#writing = false;
      this.#writeStartedAt = 0;
      this.#inFlightChars = 0;
      if (this.#closed) this.#finish();
      else if (this.#afterWrite) this.#afterWrite();
    }
  }
}

function isDisconnect(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.BadResource ||
    err instanceof Deno.errors.Interrupted ||
    err instanceof Deno.errors.NotConnected;
}
