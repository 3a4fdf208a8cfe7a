/**
 * `PendingRequests`: the client's requests awaiting their reply, matched by request id, with timeouts. A
 * request the server refused without serving it at all (`RATE_LIMITED`, or `OVERLOADED` for its unanswered
 * requests) is sent again after a growing pause, until its timeout: a client that submits faster than the
 * server allows is slowed down instead of failing half-way through a batch.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import {
  DEFAULT_MAX_JSON_DEPTH,
  DEFAULT_MAX_LINE_BYTES,
  exceedsJsonDepth,
} from "../shared/framing.ts";
import { encodeFrame, type Reply, type Request } from "../shared/protocol.ts";

/** A reply that answers a request: every frame but a `result` push. */
export type RequestReply = Exclude<Reply, { type: "result" }>;

/** Options of {@linkcode PendingRequests}. */
export interface PendingRequestsOptions {
  /** How long a request may wait for its reply, reconnections included. */
  readonly timeoutMs: number;
  /** Writes one encoded request line to the server. */
  readonly send: (line: string) => void;
}

interface Pending {
  readonly line: string;
  readonly resolve: (frame: RequestReply) => void;
  readonly reject: (err: ColmenaError) => void;
  deadline: number;
  /** How many times the server refused it without serving it. */
  refusals: number;
  /** Set while it waits to be sent again after a refusal. */
  retry: ReturnType<typeof setTimeout> | undefined;
}

/** How often expired requests are looked for, in milliseconds. */
const SWEEP_EVERY_MS = 250;
/** Codes of a request the server did not serve at all: sending it again is safe. */
const REFUSED_UNSERVED: ReadonlySet<string> = new Set(["RATE_LIMITED", "OVERLOADED"]);
/** The pause before sending a refused request again, doubled after each refusal up to the next. */
const FIRST_RETRY_MS = 20;
const MAX_RETRY_MS = 1_000;

/**
 * Requests in flight: each gets an id, its reply resolves it (an `error` reply rejects it with the
 * rebuilt {@linkcode ColmenaError}), and one with no reply within `timeoutMs` rejects with `TIMEOUT`.
 */
export class PendingRequests {
  readonly #options: PendingRequestsOptions;
  #nextId = 1;
  /** In insertion order, so deadlines grow from the front. */
  readonly #pending = new Map<string, Pending>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(options: PendingRequestsOptions) {
    this.#options = options;
  }

  /** A fresh request id. */
  nextId(): string {
    return String(this.#nextId++);
  }

  /**
   * Sends a request and resolves with its reply. A line the server could not match to its request (too
   * large, too deep) is refused here with `FRAME_TOO_LARGE` or `TOO_DEEP`.
   */
  request(frame: Request): Promise<RequestReply> {
    if (this.#closed) return Promise.reject(new ColmenaError("CONNECTION_CLOSED"));
    const line = encodeFrame(frame);
    if (line.length > DEFAULT_MAX_LINE_BYTES) {
      return Promise.reject(new ColmenaError("FRAME_TOO_LARGE"));
    }
    if (exceedsJsonDepth(line, DEFAULT_MAX_JSON_DEPTH)) {
      return Promise.reject(new ColmenaError("TOO_DEEP"));
    }
    const { promise, resolve, reject } = Promise.withResolvers<RequestReply>();
    this.#pending.set(frame.id, {
      line,
      resolve,
      reject,
      deadline: Date.now() + this.#options.timeoutMs,
      refusals: 0,
      retry: undefined,
    });
    this.#options.send(line);
    return promise;
  }

  /** Settles the request a reply answers; a reply to no pending request (or to none, `id: null`) is ignored. */
  settle(frame: RequestReply): void {
    if (frame.id === null) return;
    const pending = this.#pending.get(frame.id);
    if (pending === undefined || pending.retry !== undefined) return;
    if (frame.type === "error" && REFUSED_UNSERVED.has(frame.code) && this.#sendAgain(pending)) {
      return;
    }
    this.#pending.delete(frame.id);
    if (frame.type === "error") pending.reject(ColmenaError.fromWire(frame));
    else pending.resolve(frame);
  }

  /**
   * Sends a refused request again after a pause (20 ms, doubling up to 1 s, with jitter), unless that would
   * pass its deadline; `false` then, and the refusal is its answer.
   */
  #sendAgain(pending: Pending): boolean {
    const pause = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** pending.refusals) *
      (0.5 + Math.random() / 2);
    if (this.#closed || Date.now() + pause >= pending.deadline) return false;
    pending.refusals++;
    pending.retry = setTimeout(() => {
      pending.retry = undefined;
      if (!this.#closed) this.#options.send(pending.line);
    }, pause);
    return true;
  }

  /** Restarts a request's timeout, for a reply that comes in parts (a long download). */
  keepAlive(id: string): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    // Re-inserted at the back, where the latest deadlines are.
    this.#pending.delete(id);
    pending.deadline = Date.now() + this.#options.timeoutMs;
    this.#pending.set(id, pending);
  }

  /** The lines of the requests still without a reply, oldest first: what to resend after a reconnect. */
  unanswered(): string[] {
    return [...this.#pending.values()].map((p) => {
      // Resent now: not again when its pause after a refusal ends.
      clearTimeout(p.retry);
      p.retry = undefined;
      return p.line;
    });
  }

  /** Starts rejecting expired requests with `TIMEOUT`; calling it again does nothing. */
  startTimeouts(): void {
    this.#sweeper ??= setInterval(() => this.#expire(), SWEEP_EVERY_MS);
  }

  /** Rejects every pending request, and any later one, with `reason`; stops the timeouts. */
  close(reason: ColmenaError): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.retry);
      pending.reject(reason);
    }
    this.#pending.clear();
  }

  #expire(): void {
    const now = Date.now();
    for (const [id, pending] of this.#pending) {
      if (pending.deadline > now) break;
      clearTimeout(pending.retry);
      this.#pending.delete(id);
      pending.reject(
        new ColmenaError("TIMEOUT", {
          message: `El servidor no respondió en ${this.#options.timeoutMs} ms`,
        }),
      );
    }
  }
}

/** The error for a reply of the wrong type: the server and this client disagree on the protocol. */
export function unexpectedReply(frame: Reply): ColmenaError {
  return new ColmenaError("INTERNAL", {
    message: `Respuesta inesperada del servidor: "${frame.type}"`,
  });
}
