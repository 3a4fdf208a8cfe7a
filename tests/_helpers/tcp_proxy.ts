/**
 * A TCP proxy on loopback that a test can cut and restore, to take a real broker away from a process
 * without stopping the broker for everybody else.
 *
 * @module
 */

/** Forwards 127.0.0.1:`port` to a target; `cut()` drops every connection and refuses new ones. */
export class TcpProxy implements AsyncDisposable {
  readonly #target: { hostname: string; port: number };
  #listener: Deno.TcpListener | undefined;
  readonly #conns = new Set<Deno.Conn>();
  #port = 0;
  #accepting: Promise<void> | undefined;

  constructor(target: { hostname: string; port: number }) {
    this.#target = target;
  }

  /** The local port; stable across `cut()`/`restore()`. */
  get port(): number {
    return this.#port;
  }

  /** Starts listening (on the same port as before after a cut). */
  restore(): void {
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
      inbound.readable.pipeTo(outbound.writable, { preventClose: true }),
      outbound.readable.pipeTo(inbound.writable, { preventClose: true }),
    ]).finally(close);
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
