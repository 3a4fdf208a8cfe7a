/**
 * The server's HTTP listener: for load balancers and Prometheus, `GET /healthz` (the process serves),
 * `GET /readyz` (the broker is connected and the task store answers; 503 once draining) and `GET /metrics`;
 * for people, the dashboard and the browser client (`web_routes.ts`). Unknown paths answer 404 and other
 * methods 405, both as JSON in Spanish.
 *
 * @module
 */
import * as log from "../shared/log.ts";
import { METRICS_CONTENT_TYPE } from "./metrics.ts";
import { handleWeb, type WebTarget } from "./web_routes.ts";

/** What each dependency's readiness is. */
export interface Readiness {
  /** The RabbitMQ connection is up. */
  readonly broker: boolean;
  /** The task store answered a cheap query in time. */
  readonly almacen: boolean;
}

/** What the HTTP listener reads from the server. */
export interface HttpTarget {
  /** Whether the server is draining (SIGTERM): `/readyz` then answers 503 without asking anything else. */
  draining(): boolean;
  /** Checks the broker and the store now. */
  readiness(): Promise<Readiness>;
  /** The Prometheus text of `/metrics`. */
  metrics(): string | Promise<string>;
  /** The dashboard, the browser client and their routes; without it only the three routes above exist. */
  readonly web?: WebTarget;
}

/** A running HTTP listener. */
export interface HttpListener {
  /** The bound address (the real port when 0 was asked). */
  readonly addr: Deno.NetAddr;
  /** Stops accepting, lets requests under way finish, and resolves once closed. */
  shutdown(): Promise<void>;
}

function _json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/** Answers one request; exported for tests of the routing alone. */
export async function handleHttp(
  request: Request,
  target: HttpTarget,
  info?: Deno.ServeHandlerInfo<Deno.NetAddr>,
): Promise<Response> {
  const path = new URL(request.url).pathname;
  const known = path === "/healthz" || path === "/readyz" || path === "/metrics";
  if (!known) {
    const answer = target.web === undefined
      ? undefined
      : await handleWeb(request, target.web, info);
    return answer ?? _json(404, { error: "no_encontrado", message: `No existe la ruta ${path}` });
  }
  if (request.method !== "GET") {
    return _json(405, {
      error: "metodo_no_permitido",
      message: `La ruta ${path} solo admite GET, no ${request.method}`,
    }, { allow: "GET" });
  }
  switch (path) {
    case "/healthz":
      return _json(200, { estado: "vivo" });
    case "/readyz": {
      if (target.draining()) return _json(503, { estado: "no listo", drenando: true });
      const ready = await target.readiness();
      const ok = ready.broker && ready.almacen;
      return _json(ok ? 200 : 503, { estado: ok ? "listo" : "no listo", ...ready });
    }
    default:
      return new Response(await target.metrics(), {
        headers: { "content-type": METRICS_CONTENT_TYPE },
      });
  }
}

/** The HTTP address is taken: told apart from the TCP port's `AddrInUse` to name the right option. */
export class HttpAddrInUseError extends Error {
  constructor(options?: ErrorOptions) {
    super("Cannot listen for HTTP: address in use", options);
    this.name = "HttpAddrInUseError";
  }
}

/** Starts listening on `hostname:port` and prints `HTTP en <host>:<puerto>` with the bound port. */
export function serveHttp(
  address: { readonly hostname: string; readonly port: number },
  target: HttpTarget,
): HttpListener {
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = _serve(address, target);
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) throw new HttpAddrInUseError({ cause: err });
    throw err;
  }
  const addr = server.addr;
  log.info(`HTTP en ${address.hostname}:${addr.port}`);
  return { addr, shutdown: () => server.shutdown() };
}

function _serve(
  address: { readonly hostname: string; readonly port: number },
  target: HttpTarget,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({
    hostname: address.hostname,
    port: address.port,
    onListen() {},
    onError(err) {
      log.error("Fallo al atender una petición HTTP", err);
      return _json(500, { error: "interno", message: "Error interno del servidor" });
    },
  }, (request, info) => handleHttp(request, target, info));
}
