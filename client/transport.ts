/**
 * `Transport`: the client's TCP (or TLS) connection to a server: framing, writing, reconnecting and closing.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { ColmenaError, isErrorCode } from "../shared/errors.ts";
import { describeConnectFailure, describeTlsFailure } from "./connect_error.ts";
import { type ClientTlsOptions, loadTlsMaterial, type TlsMaterial, usesTls } from "./tls.ts";
import { LineFramer } from "../shared/framing.ts";
import { parseJsonLine, Reply } from "../shared/protocol.ts";

/** Longest reply line read: a large `result` or `tasks` page fits. */
const MAX_REPLY_LINE_BYTES = 256 * 1024 * 1024;

/** Longest wait for the server to complete a TLS handshake. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Options of {@linkcode Transport}: where to connect, and what to call as frames and events come. */
export interface TransportOptions {
  readonly host: string;
  readonly port: number;
  /** TLS settings; without them (or with `tls: false` and nothing else) the connection is plain TCP. */
  readonly tls?: ClientTlsOptions | undefined;
  /** After losing the server, how long to keep trying to reconnect; 0 disables reconnection. */
  readonly reconnectForMs: number;
  /** Called with each well-formed frame read, except connection-level errors (`id: null`). */
  readonly onFrame: (frame: Reply) => void;
  /** Whether a lost connection should be dialled again (rather than closing the transport). */
  readonly shouldReconnect: () => boolean;
  /** Called as soon as a reconnection is attached, before anything else is written on it. */
  readonly onReconnect: () => void;
  /** Called once, when the transport closes for good, with the reason. */
  readonly onClose: (reason: ColmenaError) => void;
}

/**
 * One connection at a time to a server, dialled again with backoff when it drops. Lines written while
 * reconnecting are dropped: `onReconnect` resends what still matters.
 */
export class Transport {
  readonly #options: TransportOptions;
  #conn: Deno.Conn | undefined;
  #tlsMaterial: Promise<TlsMaterial> | undefined;
  #reading: Promise<void> | undefined;
  #out: string[] = [];
  #writing = false;
  #closed = false;
  #closing = false;
  #reconnecting = false;
  #reconnects = 0;
  /** The reason a connection-level `error` frame gave; the close that follows uses it. */
  #lastError: ColmenaError | undefined;
  readonly #closedReason = Promise.withResolvers<void | ColmenaError>();

  constructor(options: TransportOptions) {
    this.#options = options;
  }

  /** Whether the transport has closed for good. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** How many times the transport has reconnected after losing the server. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** Dials the server and starts reading; `CONNECTION_CLOSED` if it cannot, or if closed meanwhile. */
  async open(): Promise<void> {
    const conn = await this.#dial();
    if (this.#closed) {
      // close() was called while connecting.
      conn.close();
      throw new ColmenaError("CONNECTION_CLOSED");
    }
    this.#attach(conn);
  }

  /** Queues one encoded line for writing; dropped while reconnecting or once closed. */
  write(line: string): void {
    if (this.#closed || this.#reconnecting) return;
    this.#out.push(line);
    if (!this.#writing) {
      this.#writing = true;
      setImmediate(() => this.#writeLoop());
    }
  }

  /** Resolves when the transport has closed for good: with the reason, or nothing after `close()`. */
  closed(): Promise<void | ColmenaError> {
    return this.#closedReason.promise;
  }

  /** Closes for good with `CONNECTION_CLOSED`, and waits for the reading to stop. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#shutdown(new ColmenaError("CONNECTION_CLOSED"));
    await this.#reading;
  }

  async #dial(): Promise<Deno.Conn> {
    const { host, port, tls } = this.#options;
    if (tls !== undefined && usesTls(tls)) return await this.#dialTls(tls);
    try {
      const conn = await Deno.connect({ hostname: host, port });
      conn.setNoDelay(true);
      return conn;
    } catch (cause) {
      throw new ColmenaError("CONNECTION_CLOSED", {
        message: describeConnectFailure(cause, { host, port }),
        cause,
      });
    }
  }

  /** Dials with TLS and completes the handshake; `TLS_FAILED` says why it could not. */
  async #dialTls(tls: ClientTlsOptions): Promise<Deno.Conn> {
    const { host, port } = this.#options;
    let material: TlsMaterial;
    try {
      this.#tlsMaterial ??= loadTlsMaterial(tls);
      material = await this.#tlsMaterial;
    } catch (cause) {
      this.#tlsMaterial = undefined;
      throw new ColmenaError("TLS_FAILED", {
        message: cause instanceof Error ? cause.message : String(cause),
        cause,
      });
    }
    let conn: Deno.TlsConn;
    try {
      conn = await Deno.connectTls({ hostname: host, port, ...material });
    } catch (cause) {
      throw this.#tlsError(cause);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        conn.handshake(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new ColmenaError("TLS_FAILED", {
                  message:
                    `El servidor ${host}:${port} no completó el saludo TLS en ${TLS_HANDSHAKE_TIMEOUT_MS} ms: ` +
                    "¿habla TLS?",
                }),
              ),
            TLS_HANDSHAKE_TIMEOUT_MS,
          );
        }),
      ]);
      return conn;
    } catch (cause) {
      try {
        conn.close();
      } catch {
        // already closed
      }
      throw cause instanceof ColmenaError ? cause : this.#tlsError(cause);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A failure while connecting with TLS, as `TLS_FAILED` when it is about TLS. */
  #tlsError(cause: unknown): ColmenaError {
    const { host, port } = this.#options;
    const tlsMessage = describeTlsFailure(cause, { host, port });
    return tlsMessage === undefined
      ? new ColmenaError("CONNECTION_CLOSED", {
        message: describeConnectFailure(cause, { host, port }),
        cause,
      })
      : new ColmenaError("TLS_FAILED", { message: tlsMessage, cause });
  }

  #attach(conn: Deno.Conn): void {
    this.#conn = conn;
    this.#reading = this.#readLoop(conn);
  }

  async #writeLoop(): Promise<void> {
    const encoder = new TextEncoder();
    const conn = this.#conn;
    try {
      while (this.#out.length > 0 && conn !== undefined && !this.#closed && !this.#reconnecting) {
        const bytes = encoder.encode(this.#out.join(""));
        this.#out = [];
        let offset = 0;
        while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
      }
    } catch {
      // The read loop sees the same failure and reconnects or shuts down.
      try {
        conn?.close();
      } catch {
        // already closed
      }
    } finally {
      this.#writing = false;
    }
  }

  async #readLoop(conn: Deno.Conn): Promise<void> {
    let replied = false;
    try {
      for await (const framed of conn.readable.pipeThrough(new LineFramer(MAX_REPLY_LINE_BYTES))) {
        replied = true;
        if (framed.kind !== "line" || framed.bytes.length === 0) continue;
        const json = parseJsonLine(framed.bytes, { maxDepth: 10_000 });
        if (!json.ok) continue;
        const parsed = Reply.safeParse(_normalizeErrorCodes(json.value));
        if (!parsed.success) continue;
        const frame = parsed.data;
        // A connection-level error: the close that follows rejects the rest with it.
        if (frame.type === "error" && frame.id === null) {
          this.#lastError = ColmenaError.fromWire(frame);
        } else {
          this.#options.onFrame(frame);
        }
      }
    } catch (cause) {
      // The connection ended; handled below. Under mutual TLS, a refused client certificate shows here,
      // before any reply: TLS 1.3 ends the client's handshake before the server has checked it.
      const tls = this.#options.tls;
      if (!replied && tls !== undefined && usesTls(tls)) {
        const tlsMessage = describeTlsFailure(cause, this.#options, {
          clientCert: tls.cert !== undefined,
          beforeReply: true,
        });
        if (tlsMessage !== undefined) {
          this.#lastError = new ColmenaError("TLS_FAILED", { message: tlsMessage, cause });
        }
      }
    }
    if (this.#closed) return;
    const reason = this.#lastError ?? new ColmenaError("CONNECTION_CLOSED");
    this.#lastError = undefined;
    if (this.#options.reconnectForMs > 0 && this.#options.shouldReconnect()) {
      this.#reconnect(reason);
    } else {
      this.#shutdown(reason);
    }
  }

  /** Dials again with backoff until it connects (then calls `onReconnect`) or gives up (then closes). */
  async #reconnect(reason: ColmenaError): Promise<void> {
    this.#reconnecting = true;
    this.#out = [];
    const giveUpAt = Date.now() + this.#options.reconnectForMs;
    let delay = 100;
    while (!this.#closed) {
      await new Promise((r) => setTimeout(r, delay));
      if (this.#closed) return;
      let conn: Deno.Conn;
      try {
        conn = await this.#dial();
      } catch {
        if (Date.now() + delay > giveUpAt) {
          this.#shutdown(reason);
          return;
        }
        delay = Math.min(delay * 2, 2_000);
        continue;
      }
      if (this.#closed) {
        conn.close();
        return;
      }
      this.#reconnects++;
      this.#reconnecting = false;
      this.#attach(conn);
      this.#options.onReconnect();
      return;
    }
  }

  #shutdown(reason: ColmenaError): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
    this.#options.onClose(reason);
    this.#closedReason.resolve(this.#closing ? undefined : reason);
  }
}

/**
 * A newer server may send error codes this client does not know: they become `INTERNAL` (keeping the
 * message), so the frame is still understood instead of dropped.
 */
function _normalizeErrorCodes(value: unknown): unknown {
  if (typeof value !== "object" || value === null) return value;
  const frame = value as Record<string, unknown>;
  if (frame.type === "error" && typeof frame.code === "string" && !isErrorCode(frame.code)) {
    return { ...frame, code: "INTERNAL" };
  }
  const error = frame.error as Record<string, unknown> | undefined;
  if (
    frame.type === "result" && typeof error === "object" && error !== null &&
    typeof error.code === "string" && !isErrorCode(error.code)
  ) {
    return { ...frame, error: { ...error, code: "INTERNAL" } };
  }
  return value;
}
