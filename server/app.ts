/**
 * The server: starts, accepts TCP clients (or TLS ones, `tls_listener.ts`), dispatches their requests,
 * sweeps idle or stuck connections and drains. The work itself lives in one module per concept:
 *
 * - `admission.ts`: frame checks, rate limit and unanswered-request slots, before dispatch;
 * - `submit.ts`: validation against the catalogue, claim check, record and publish, idempotency repeats;
 * - `result_routing.ts`: results from the broker to the connection awaiting them, watches, forwarding;
 * - `transfers.ts`: uploads and downloads;
 * - `task_queries.ts`, `dead_letters.ts`, `worker_registry.ts`: `status`/`list`/`cancel`, `dlq`, `workers`;
 * - `http.ts`, `metrics.ts`: the HTTP listener (`/healthz`, `/readyz`, `/metrics`) over `stats.ts`.
 *
 * Per-connection state is owned by `ClientConnection` (`connection.ts`).
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import * as log from "../shared/log.ts";
import type { BlobStore, ServerBroker, TaskStore } from "../shared/ports.ts";
import {
  maxTasksLineBytes,
  PROTOCOL_VERSION,
  type Request,
  type ServerLimits,
} from "../shared/protocol.ts";
import type { Heartbeat, ResultBatch } from "../shared/queue_messages.ts";
import type { ServerConfig } from "../shared/config.ts";
import { admitFrame } from "./admission.ts";
import type { ByteStream } from "./byte_stream.ts";
import { ClientConnection } from "./connection.ts";
import { deadLetters } from "./dead_letters.ts";
import { type HttpListener, type Readiness, serveHttp } from "./http.ts";
import { renderMetrics } from "./metrics.ts";
import { ResultRouter } from "./result_routing.ts";
import { localPrincipal } from "./principal.ts";
import { newServerStats, type ServerStats } from "./stats.ts";
import { Submitter } from "./submit.ts";
import { cancel, list, status, type TaskQueryDeps } from "./task_queries.ts";
import { abortUploads, download, type TransferDeps, upload } from "./transfers.ts";
import { WorkerRegistry } from "./worker_registry.ts";
import { readTlsFiles, TlsListener, type TlsPeer } from "./tls_listener.ts";

export type { ServerStats };

/** How long `/readyz` waits for the task store's answer before it counts the store as not ready. */
const STORE_PROBE_MS = 2_000;
/** The id `/readyz` looks up: a primary-key read of a task that never exists. */
const PROBE_TASK_ID = "00000000-0000-0000-0000-000000000000";

/** What the server needs besides its configuration. */
export interface ServerDeps {
  /** This server's id. */
  serverId: string;
  /** Connects the broker, given the handlers of what comes from it. */
  connectBroker: (handlers: {
    onResults: (batch: ResultBatch) => Promise<void>;
    onHeartbeat: (heartbeat: Heartbeat) => void;
  }) => Promise<ServerBroker>;
  /** The task store. */
  store: TaskStore;
  /** The object store: large payloads, uploaded files, large outputs. */
  blobs: BlobStore;
  /** The task types the server accepts. @defaultValue the built-in ones */
  catalog?: TaskCatalog;
}

/** A running server. */
export class ColmenaServer {
  readonly #config: ServerConfig;
  readonly #deps: ServerDeps;
  readonly #catalog: TaskCatalog;
  #broker: ServerBroker | undefined;
  #listener: Deno.TcpListener | undefined;
  #tlsListener: TlsListener | undefined;
  #http: HttpListener | undefined;
  readonly #connections = new Set<ClientConnection>();
  readonly #router: ResultRouter;
  readonly #submitter: Submitter;
  readonly #workers = new WorkerRegistry();
  readonly #queries: TaskQueryDeps;
  readonly #transfers: TransferDeps;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #accepting: Promise<void> | undefined;
  #stopping = false;
  readonly stats: ServerStats = newServerStats();

  constructor(config: ServerConfig, deps: ServerDeps) {
    this.#config = config;
    this.#deps = deps;
    const broker = () => this.#broker;
    this.#router = new ResultRouter({
      serverId: deps.serverId,
      store: deps.store,
      broker,
      stats: this.stats,
      maxOutputBytes: config.maxOutputBytes,
    });
    this.#catalog = deps.catalog ?? BUILTIN_CATALOG;
    this.#submitter = new Submitter({
      config,
      serverId: deps.serverId,
      store: deps.store,
      blobs: deps.blobs,
      catalog: this.#catalog,
      broker,
      stopping: () => this.#stopping,
      router: this.#router,
      stats: this.stats,
    });
    this.#queries = {
      store: deps.store,
      broker,
      router: this.#router,
      maxOutputBytes: config.maxOutputBytes,
    };
    this.#transfers = { blobs: deps.blobs, maxUploadBytes: config.maxUploadBytes };
  }

  /** This server's id. */
  get serverId(): string {
    return this.#deps.serverId;
  }

  /** The bound address, once listening. */
  get addr(): Deno.NetAddr {
    const addr = this.#listener?.addr ?? this.#tlsListener?.addr;
    if (addr === undefined) {
      throw new TypeError("Cannot read addr: server is not listening");
    }
    return addr;
  }

  /** The bound HTTP address, or `undefined` without HTTP (`--sin-http`) or before `start()`. */
  get httpAddr(): Deno.NetAddr | undefined {
    return this.#http?.addr;
  }

  /**
   * Connects the broker (prints `Conectado a RabbitMQ`), then listens for clients — over TLS with
   * `tlsCert`/`tlsKey` — and, unless `sinHttp`, for HTTP (prints where).
   */
  async start(): Promise<void> {
    const c = this.#config;
    // Read before connecting anything: a missing file fails the start at once.
    const pem = c.tlsCert === undefined || c.tlsKey === undefined
      ? undefined
      : await readTlsFiles({ cert: c.tlsCert, key: c.tlsKey, clientCa: c.tlsCaClientes });
    this.#broker = await this.#deps.connectBroker({
      onResults: (batch) => this.#router.onResults(batch),
      onHeartbeat: (hb) => this.#workers.heard(hb),
    });
    log.info("Conectado a RabbitMQ");
    let port: number;
    if (pem === undefined) {
      this.#listener = Deno.listen({ hostname: c.host, port: c.port });
      port = this.#listener.addr.port;
      this.#accepting = this.#acceptLoop(this.#listener);
    } else {
      this.#tlsListener = await TlsListener.listen({
        hostname: c.host,
        port: c.port,
        pem,
        handshakeTimeoutMs: c.tlsHandshakeTimeoutMs,
        onStream: (stream, peer) => this.#accept(stream, peer),
      });
      port = this.#tlsListener.addr.port;
      log.info(
        pem.clientCa === undefined
          ? "TLS activo (1.2 o posterior)"
          : "TLS mutuo activo (1.2 o posterior): cada cliente presenta un certificado de la CA de clientes",
      );
    }
    log.info("Servidor iniciado");
    log.info(`Escuchando en ${c.host}:${port}`);
    this.#sweeper = setInterval(() => this.#sweep(), 1_000);
    if (!this.#config.sinHttp) {
      this.#http = serveHttp(this.#config.http, {
        draining: () => this.#stopping,
        readiness: () => this.readiness(),
        metrics: () => this.metrics(),
      });
    }
  }

  /** Whether the broker is connected and the task store answers a primary-key read in time. */
  async readiness(): Promise<Readiness> {
    const broker = this.#broker?.connected ?? false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), STORE_PROBE_MS);
    });
    const probe = this.#deps.store.get(PROBE_TASK_ID).then(() => true, () => false);
    const almacen = await Promise.race([probe, timeout]);
    clearTimeout(timer);
    return { broker, almacen };
  }

  /** The Prometheus text of the counters and of the gauges read now. */
  metrics(): string {
    const clientsByKind = new Map<string, number>();
    for (const c of this.#connections) {
      clientsByKind.set(c.client.kind, (clientsByKind.get(c.client.kind) ?? 0) + 1);
    }
    return renderMetrics(this.stats, {
      clientsByKind,
      workersAlive: this.#workers.aliveCount(),
      tasksAwaiting: this.#awaitingResults(),
      brokerConnected: this.#broker?.connected ?? false,
    });
  }

  /** Resolves when the broker connection ends for good, with the reason. */
  brokerClosed(): Promise<void | Error> {
    return this.#broker?.closed() ?? Promise.resolve();
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const conn of listener) {
        try {
          conn.setNoDelay(true);
        } catch {
          // the peer is already gone
        }
        this.#accept(conn);
      }
    } catch (err) {
      if (!this.#stopping) log.error("El servidor dejó de aceptar conexiones", err);
    }
  }

  /** Takes a client's socket; under mutual TLS, `peer.subject` is its principal. */
  #accept(conn: ByteStream, peer: TlsPeer = {}): void {
    const client = new ClientConnection(conn, this.#config);
    if (peer.subject !== undefined) {
      client.principal = { name: peer.subject, role: "cliente" };
      client.authenticated = true;
    }
    if (this.#connections.size >= this.#config.maxConnections || this.#stopping) {
      client.drop(new ColmenaError(this.#stopping ? "SHUTTING_DOWN" : "OVERLOADED"));
      return;
    }
    this.#connections.add(client);
    this.stats.connections++;
    const admission = {
      limits: this.#config,
      dispatch: (c: ClientConnection, request: Request) => this.#dispatch(c, request),
    };
    client.serve((framed) => admitFrame(client, framed, admission)).finally(() => {
      this.#connections.delete(client);
      abortUploads(client);
      this.#router.connectionClosed(client);
    });
  }

  async #dispatch(client: ClientConnection, request: Request): Promise<void> {
    switch (request.type) {
      case "hello":
        if (request.client) {
          client.client = request.client;
          // A principal from a client certificate stays: `hello` names the client, it does not log in.
          if (!client.authenticated) client.principal = localPrincipal(request.client.name);
        }
        client.send({
          type: "welcome",
          id: request.id,
          serverId: this.serverId,
          protocol: PROTOCOL_VERSION,
          taskTypes: this.#catalog.names(),
          limits: this.#limits(),
          principal: { name: client.principal.name, role: client.principal.role },
        });
        return;
      case "submit":
        return await this.#submitter.submit(client, request);
      case "status":
        return await status(client, request, this.#queries);
      case "ping":
        client.send({ type: "pong", id: request.id });
        return;
      case "cancel":
        return await cancel(client, request, this.#queries);
      case "watch":
        return await this.#router.watch(client, request);
      case "list":
        return await list(client, request, this.#queries);
      case "workers":
        return this.#workers.list(client, request);
      case "dlq":
        return await deadLetters(client, request, {
          store: this.#deps.store,
          broker: this.#broker,
        });
      case "upload":
        return await upload(client, request, this.#transfers);
      case "download":
        return await download(client, request, this.#transfers);
      default: {
        const unreachable: never = request;
        throw new TypeError(`Cannot dispatch frame: ${JSON.stringify(unreachable)}`);
      }
    }
  }

  #limits(): ServerLimits {
    const c = this.#config;
    return {
      maxLineBytes: c.maxLineBytes,
      maxJsonDepth: c.maxJsonDepth,
      maxOutputBytes: c.maxOutputBytes,
      writeTimeoutMs: c.writeTimeoutMs,
      rateLimit: c.rateLimit,
      rateBurst: c.rateBurst,
      maxPending: c.maxPending,
      idleTimeoutMs: c.idleTimeoutMs,
      partialLineTimeoutMs: c.partialLineTimeoutMs,
      maxUploadBytes: c.maxUploadBytes,
      publishRetryMs: c.publishRetryMs,
      maxTasksLineBytes: maxTasksLineBytes(c.maxOutputBytes),
    };
  }

  /** Drops connections that stall, leave a line half-sent or idle with nothing awaited; polls watches. */
  #sweep(): void {
    const now = Date.now();
    for (const client of this.#connections) {
      if (client.writeStalled(now)) {
        client.drop(
          new ColmenaError("SLOW_CONSUMER", {
            message:
              `El cliente no lee sus respuestas desde hace más de ${this.#config.writeTimeoutMs} ms`,
          }),
        );
      } else if (client.partialLineFor(now) > this.#config.partialLineTimeoutMs) {
        client.drop(
          new ColmenaError("IDLE_TIMEOUT", {
            message: `Línea incompleta durante más de ${this.#config.partialLineTimeoutMs} ms`,
          }),
        );
      } else if (
        client.idleFor(now) > this.#config.idleTimeoutMs && client.awaiting.size === 0 &&
        client.pending === 0
      ) {
        client.drop(new ColmenaError("IDLE_TIMEOUT"));
      }
    }
    this.#router.pollWatched();
  }

  /**
   * Stops gracefully: `/readyz` answers 503 first, then no new connections or tasks; waits up to `graceMs`
   * for tasks this server's clients still await, then closes connections, the broker and, last, HTTP.
   */
  async drain(graceMs = 5_000): Promise<void> {
    // Set before the listener closes: a balancer polling /readyz sees 503 while clients are still taken.
    this.#stopping = true;
    this.#listener?.close();
    this.#tlsListener?.close();
    await this.#accepting;
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && this.#awaitingResults() > 0) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    clearInterval(this.#sweeper);
    for (const client of this.#connections) client.end(new ColmenaError("SHUTTING_DOWN"));
    await Promise.all([...this.#connections].map((c) => c.done()));
    await this.#broker?.drain();
    await this.#http?.shutdown();
  }

  #awaitingResults(): number {
    let n = 0;
    for (const client of this.#connections) n += client.awaiting.size;
    return n;
  }
}
