/**
 * A TCP proxy on loopback that a test can cut and restore, to take a real broker away from a process
 * without stopping the broker for everybody else.
 *
 * @module
 */

/**
 * Forwards 127.0.0.1:`port` to a target; `cut()` drops every connection and refuses new ones, `stall()` keeps
 * them open but silently drops every byte (a peer that stopped answering).
 */
export class TcpProxy implements AsyncDisposable {
  readonly #target: { hostname: string; port: number };
  #listener: Deno.TcpListener | undefined;
  readonly #conns = new Set<Deno.Conn>();
  #port = 0;
  #accepting: Promise<void> | undefined;
  #stalled = false;

  constructor(target: { hostname: string; port: number }) {
    this.#target = target;
  }

  /** The local port; stable across `cut()`/`restore()`. */
  get port(): number {
    return this.#port;
  }

  /** Starts listening (on the same port as before after a cut). */
  restore(): void {
    this.#stalled = false;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: this.#port });
    this.#port = this.#listener.addr.port;
    this.#accepting = this.#accept(this.#listener);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const inbound of listener) this.#pipe(inbound);
    } catch {
      // listener closed
    }
  }

  async #pipe(inbound: Deno.TcpConn): Promise<void> {
    let outbound: Deno.TcpConn;
    try {
      outbound = await Deno.connect(this.#target);
    } catch {
      inbound.close();
      return;
    }
    this.#conns.add(inbound);
    this.#conns.add(outbound);
    const close = () => {
      for (const c of [inbound, outbound]) {
        this.#conns.delete(c);
        try {
          c.close();
        } catch {
          // already closed
        }
      }
    };
    await Promise.allSettled([
      inbound.readable.pipeThrough(this.#gate()).pipeTo(outbound.writable, { preventClose: true }),
      outbound.readable.pipeThrough(this.#gate()).pipeTo(inbound.writable, { preventClose: true }),
    ]).finally(close);
  }

  /** Passes bytes on, unless the proxy is stalled: then they are dropped. */
  #gate(): TransformStream<Uint8Array, Uint8Array> {
    return new TransformStream({
      transform: (chunk, controller) => {
        if (!this.#stalled) controller.enqueue(chunk);
      },
    });
  }

  /**
   * Keeps every connection open but drops whatever either side sends from now on, until `cut()` and
   * `restore()`: the far end looks alive and never answers.
   */
  stall(): void {
    this.#stalled = true;
  }

  /** Drops every proxied connection and stops listening. */
  async cut(): Promise<void> {
    this.#listener?.close();
    this.#listener = undefined;
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    this.#conns.clear();
    await this.#accepting;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cut();
  }
}
