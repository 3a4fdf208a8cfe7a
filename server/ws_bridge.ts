/**
 * The WebSocket bridge: a browser's WebSocket made to look like the byte stream a `ClientConnection` reads
 * and writes, so that browser clients go through the same admission, dispatch, limits and error codes as
 * TCP clients.
 *
 * Each text message from the browser is one NDJSON frame. A raw line break can only be whitespace between
 * JSON tokens (inside a JSON string it must be escaped), so line breaks in a message become spaces and the
 * message stays one frame; the line cap (`FRAME_TOO_LARGE`) applies to it as to a TCP line. Each line the
 * server writes goes out as one text message. Writes wait while the socket's send buffer is over
 * {@linkcode SEND_HIGH_WATER_BYTES}, so a browser that does not read trips the same write timeout
 * (`SLOW_CONSUMER`) as a TCP client.
 *
 * @module
 */
import type { ByteStream } from "./byte_stream.ts";

/** Bytes the WebSocket may hold unsent before a write waits. */
const SEND_HIGH_WATER_BYTES = 1024 * 1024;
/** How often a waiting write looks at the send buffer again. */
const SEND_POLL_MS = 10;

const encoder = new TextEncoder();

/**
 * Wraps an upgraded WebSocket as a {@linkcode ByteStream}. Incoming messages not yet read are held up to
 * `maxQueuedBytes`; past that the socket is closed (1009), which ends the connection. A WebSocket has no
 * backpressure of its own, so while the connection does not read (its unanswered requests over
 * `maxPendingBytes`) a browser that keeps sending fills this queue and is closed.
 */
export function webSocketConn(
  socket: WebSocket,
  options: { readonly remoteAddr: Deno.Addr; readonly maxQueuedBytes: number },
): ByteStream {
  return new _WebSocketConn(socket, options);
}

class _WebSocketConn implements ByteStream {
  readonly remoteAddr: Deno.Addr;
  readonly #socket: WebSocket;
  readonly #maxQueuedBytes: number;
  readonly #incoming: Uint8Array[] = [];
  #queuedBytes = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  readonly #opened = Promise.withResolvers<void>();
  readonly #decoder = new TextDecoder();
  #partialLine = "";

  constructor(
    socket: WebSocket,
    options: { readonly remoteAddr: Deno.Addr; readonly maxQueuedBytes: number },
  ) {
    this.#socket = socket;
    this.remoteAddr = options.remoteAddr;
    this.#maxQueuedBytes = options.maxQueuedBytes;
    socket.binaryType = "arraybuffer";
    if (socket.readyState === WebSocket.OPEN) this.#opened.resolve();
    socket.addEventListener("open", () => this.#opened.resolve());
    socket.addEventListener("message", (event) => this.#received(event.data));
    socket.addEventListener("close", () => this.#end());
    socket.addEventListener("error", () => this.#end());
  }

  #received(data: unknown): void {
    if (this.#ended) return;
    const text = typeof data === "string"
      ? data
      : data instanceof ArrayBuffer
      ? new TextDecoder().decode(data)
      : "";
    const bytes = encoder.encode(text.replace(/\r\n|\r|\n/g, " ") + "\n");
    this.#queuedBytes += bytes.length;
    if (this.#queuedBytes > this.#maxQueuedBytes) {
      this.#socket.close(1009, "Demasiados datos sin leer");
      this.#end();
      return;
    }
    this.#incoming.push(bytes);
    this.#wakeReader();
  }

  #end(): void {
    this.#ended = true;
    this.#opened.resolve();
    this.#wakeReader();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#incoming.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const head = this.#incoming[0]!;
    const n = Math.min(buffer.length, head.length);
    buffer.set(head.subarray(0, n));
    if (n === head.length) this.#incoming.shift();
    else this.#incoming[0] = head.subarray(n);
    this.#queuedBytes -= n;
    return n;
  }

  async write(bytes: Uint8Array): Promise<number> {
    await this.#opened.promise;
    if (this.#socket.readyState !== WebSocket.OPEN) {
      throw new Deno.errors.BrokenPipe("Cannot write to WebSocket: it is closed");
    }
    const lines = (this.#partialLine + this.#decoder.decode(bytes, { stream: true })).split("\n");
    this.#partialLine = lines.pop()!;
    for (const line of lines) this.#socket.send(line);
    while (this.#socket.bufferedAmount > SEND_HIGH_WATER_BYTES) {
      if (this.#socket.readyState !== WebSocket.OPEN) {
        throw new Deno.errors.BrokenPipe("Cannot write to WebSocket: it closed while sending");
      }
      await new Promise((resolve) => setTimeout(resolve, SEND_POLL_MS));
    }
    return bytes.length;
  }

  close(): void {
    this.#end();
    try {
      this.#socket.close(1000);
    } catch {
      // not open yet, or already closed
    }
  }
}
