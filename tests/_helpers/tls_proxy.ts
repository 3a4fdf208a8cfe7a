/**
 * A TLS-terminating proxy on loopback for tests: it accepts TLS with a test certificate and pipes the
 * plaintext to a TCP target (the local RabbitMQ), so that a process can be tested against `amqps://`.
 *
 * @module
 */
import net from "node:net";
import tls from "node:tls";

/** A TLS front for `target`; counts the TLS connections it has completed. */
export class TlsProxy implements AsyncDisposable {
  readonly #server: tls.Server;
  readonly #sockets = new Set<net.Socket>();
  /** TLS handshakes completed so far. */
  secureConnections = 0;

  private constructor(server: tls.Server) {
    this.#server = server;
  }

  /** Listens on 127.0.0.1 and a free port with the given PEM certificate and key. */
  static async start(
    pem: { cert: string; key: string },
    target: { hostname: string; port: number },
  ): Promise<TlsProxy> {
    const server = tls.createServer({ cert: pem.cert, key: pem.key });
    const proxy = new TlsProxy(server);
    server.on("tlsClientError", (_err: Error, socket: tls.TLSSocket) => socket.destroy());
    server.on("secureConnection", (inbound: tls.TLSSocket) => {
      proxy.secureConnections++;
      const outbound = net.connect(target.port, target.hostname);
      for (const s of [inbound, outbound]) {
        proxy.#sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => {
          proxy.#sockets.delete(s);
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.pipe(outbound);
      outbound.pipe(inbound);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    return proxy;
  }

  /** The local port. */
  get port(): number {
    const addr = this.#server.address();
    return typeof addr === "object" && addr !== null ? addr.port : 0;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
