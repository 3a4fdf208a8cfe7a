/**
 * A raw-socket client that speaks the wire protocol by hand, with no help from `client.ts`.
 *
 * @module
 */

/** A frame as the server sent it. */
export type Frame = Record<string, unknown> & { type: string };

/** A TCP connection that sends lines and collects the frames the server sends back. */
export class RawClient implements AsyncDisposable {
  readonly #conn: Deno.TcpConn;
  readonly frames: Frame[] = [];
  readonly #waiters: { test: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  readonly #reading: Promise<void>;
  #closedByPeer = false;
  readonly #encoder = new TextEncoder();

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#reading = this.#read();
  }

  /** Connects to 127.0.0.1:`port`. */
  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Whether the server closed the connection. */
  get closedByPeer(): boolean {
    return this.#closedByPeer;
  }

  async #read(): Promise<void> {
    let rest = "";
    try {
      for await (const chunk of this.#conn.readable.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        const lines = rest.split("\n");
        rest = lines.pop() ?? "";
        for (const line of lines) {
          if (line === "") continue;
          const frame = JSON.parse(line) as Frame;
          this.frames.push(frame);
          for (let i = 0; i < this.#waiters.length; i++) {
            if (this.#waiters[i]!.test(frame)) {
              this.#waiters[i]!.resolve(frame);
              this.#waiters.splice(i, 1);
              break;
            }
          }
        }
      }
    } catch {
      // closed
    }
    this.#closedByPeer = true;
  }

  /** Sends one object as a JSON line. */
  async send(frame: unknown): Promise<void> {
    await this.sendRaw(JSON.stringify(frame) + "\n");
  }

  /** Sends raw text or bytes, as they are. */
  async sendRaw(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? this.#encoder.encode(data) : data;
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  /** The first frame (already received or to come) that passes `test`; rejects after `timeoutMs`. */
  next(test: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    const found = this.frames.find(test);
    if (found) return Promise.resolve(found);
    const { promise, resolve, reject } = Promise.withResolvers<Frame>();
    const waiter = { test, resolve };
    this.#waiters.push(waiter);
    const timer = setTimeout(() => {
      const i = this.#waiters.indexOf(waiter);
      if (i >= 0) this.#waiters.splice(i, 1);
      reject(
        new Error(
          `No frame matched within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-5))}`,
        ),
      );
    }, timeoutMs);
    return promise.finally(() => clearTimeout(timer));
  }

  /** The reply to request `id`. */
  reply(id: string, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.id === id && f.type !== "result", timeoutMs);
  }

  /** The result pushed for `taskId`. */
  result(taskId: string, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.type === "result" && f.taskId === taskId, timeoutMs);
  }

  /** Submits a task and returns its id once accepted; throws with the error frame otherwise. */
  async submit(id: string, type: string, payload: unknown, options?: unknown): Promise<string> {
    await this.send({
      type: "submit",
      id,
      task: { type, payload },
      ...(options ? { options } : {}),
    });
    const reply = await this.reply(id);
    if (reply.type !== "accepted") {
      throw new Error(`Submit ${id} was not accepted: ${JSON.stringify(reply)}`);
    }
    return reply.taskId as string;
  }

  /** Shuts down the write side only (half-close), as `printf … | nc` does; replies can still arrive. */
  async closeWrite(): Promise<void> {
    await this.#conn.closeWrite();
  }

  /** Resolves once the server has closed the connection; rejects after `timeoutMs`. */
  async closedByServer(timeoutMs = 10_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`The server did not close the connection within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.#reading, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    await this.#reading;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
