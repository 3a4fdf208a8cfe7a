/**
 * The server: starts, accepts TCP clients (or TLS ones, `tls_listener.ts`), dispatches their requests,
 * sweeps idle or stuck connections and drains. The work itself lives in one module per concept:
 *
 * - `admission.ts`: frame checks, rate limit and unanswered-request slots, before dispatch;
 * - `hello.ts`, `tokens.ts`: who a connection acts for (its token's principal when `--tokens` is set);
 * - `submit.ts`: validation against the catalogue, claim check, record and publish, idempotency repeats;
 * - `result_routing.ts`: results from the broker to the connection awaiting them, watches, forwarding;
 * - `transfers.ts`: uploads and downloads;
 * - `quotas.ts`: what one `cliente` principal may ask (tasks in flight, submits per second, priority, budget,
 *   uploads);
 * - `task_queries.ts`, `dead_letters.ts`, `worker_registry.ts`: `status`/`list`/`cancel`, `dlq`, `workers`;
 * - `http.ts`, `metrics.ts`: the HTTP listener (`/healthz`, `/readyz`, `/metrics`) over `stats.ts`.
 *
 * Per-connection state is owned by `ClientConnection` (`connection.ts`).
 *
 * @module
 */
import { setTimeout as delay } from "node:timers/promises";
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
import { DashboardFeed } from "./dashboard_feed.ts";
import { deadLetters, requeueFromDeadLetters } from "./dead_letters.ts";
import { type HttpListener, type Readiness, serveHttp } from "./http.ts";
import { renderMetrics } from "./metrics.ts";
import { PendingResultsStore } from "./pending_results.ts";
import { ResultRouter } from "./result_routing.ts";
import { greet } from "./hello.ts";
import { FailureThrottle, type TokenRegistry } from "./tokens.ts";
import type { Principal } from "./principal.ts";
import { PrincipalQuotas } from "./quotas.ts";
import { newServerStats, type ServerStats } from "./stats.ts";
import { Submitter } from "./submit.ts";
import {
  cancel,
  cancelTask,
  findTask,
  list,
  OPERATOR,
  status,
  type TaskQueryDeps,
} from "./task_queries.ts";
import { abortUploads, download, type TransferDeps, upload } from "./transfers.ts";
import { WorkerRegistry } from "./worker_registry.ts";
import { webSocketConn } from "./ws_bridge.ts";
import type { TaskInspection, WebTarget } from "./web_routes.ts";
import { describeTaskType, type TaskTypeDescription } from "../shared/task_description.ts";
import { readTlsFiles, TlsListener, type TlsPeer } from "./tls_listener.ts";

export type { ServerStats };

/** How long `/readyz` waits for the task store's answer before it counts the store as not ready. */
const STORE_PROBE_MS = 2_000;
/** The longest line a connection may send before it has authenticated (when tokens are configured). */
export const PRE_AUTH_MAX_LINE_BYTES = 16 * 1024;

/** The id `/readyz` looks up: a primary-key read of a task that never exists. */
const PROBE_TASK_ID = "00000000-0000-0000-0000-000000000000";
/** First wait after a failed accept (out of descriptors…), doubled while it keeps failing. */
const ACCEPT_BACKOFF_MIN_MS = 10;
/** Longest wait between two accepts that fail. */
const ACCEPT_BACKOFF_MAX_MS = 1_000;

/** What the server needs besides its configuration. */
export interface ServerDeps {
  /** This server's id. */
  serverId: string;
  /** Connects the broker, given the handlers of what comes from it. */
  connectBroker: (handlers: {
    onResults: (batch: ResultBatch) => Promise<void>;
    onHeartbeat: (heartbeat: Heartbeat) => void;
    /** The fairness cap on the tasks of one message of a type (see `WorkerRegistry.batchLimit`). */
    batchLimit: (type: string) => number;
    /** The cap on the tasks of one bulk message of a type (see `WorkerRegistry.bulkLimit`). */
    bulkLimit: (type: string) => number;
  }) => Promise<ServerBroker>;
  /** The task store. */
  store: TaskStore;
  /** The object store: large payloads, uploaded files, large outputs. */
  blobs: BlobStore;
  /** The task types the server accepts. @defaultValue the built-in ones */
  catalog?: TaskCatalog;
  /**
   * The accepted access tokens (`--tokens`): with them, every connection must authenticate in `hello`.
   * @defaultValue none: no authentication, each connection acts for its `hello` name as `admin`
   */
  tokens?: TokenRegistry;
  /**
   * Without tokens, who a connection acts for, given its `hello` name. @defaultValue `localPrincipal` (role
   * `admin`); tests pass one that gives the `cliente` role.
   */
  principalFor?: (name: string) => Principal;
  /**
   * Whether an HTTP request may use the dashboard's operator routes. @defaultValue with `tokens`, its
   * `Authorization: Bearer` token must be an `admin`'s; without tokens (loopback, zero set-up), any request
   */
  authorizeAdmin?: (request: globalThis.Request) => Promise<boolean>;
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
  /** Open connections by the peer's IP address. */
  readonly #perAddress = new Map<string, number>();
  readonly #quotas: PrincipalQuotas;
  readonly #router: ResultRouter;
  /** The task store, its reads waiting for the results pushed here and not yet recorded. */
  readonly #store: PendingResultsStore;
  readonly #submitter: Submitter;
  readonly #workers = new WorkerRegistry();
  readonly #queries: TaskQueryDeps;
  readonly #transfers: TransferDeps;
  readonly #throttle = new FailureThrottle();
  /** What every connection's frames are admitted with: one object for all, not one per connection. */
  readonly #admission: Parameters<typeof admitFrame>[2];
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #accepting: Promise<void> | undefined;
  #stopping = false;
  /** Draining has begun: `/readyz` answers 503 (before `#stopping`, by `drainDelayMs`). */
  #unready = false;
  readonly stats: ServerStats = newServerStats();
  readonly #feed: DashboardFeed;
  #taskTypes: readonly TaskTypeDescription[] | undefined;

  constructor(config: ServerConfig, deps: ServerDeps) {
    this.#config = config;
    this.#deps = deps;
    this.#store = new PendingResultsStore(deps.store);
    this.#admission = {
      limits: config,
      dispatch: (c: ClientConnection, request: Request) => this.#dispatch(c, request),
    };
    const broker = () => this.#broker;
    this.#quotas = new PrincipalQuotas(config);
    this.#router = new ResultRouter({
      serverId: deps.serverId,
      store: this.#store,
      broker,
      stats: this.stats,
      maxOutputBytes: config.maxOutputBytes,
      onFinished: (taskId) => this.#quotas.finished(taskId),
    });
    this.#catalog = deps.catalog ?? BUILTIN_CATALOG;
    this.#submitter = new Submitter({
      config,
      serverId: deps.serverId,
      store: this.#store,
      blobs: deps.blobs,
      catalog: this.#catalog,
      broker,
      stopping: () => this.#stopping,
      router: this.#router,
      stats: this.stats,
      quotas: this.#quotas,
    });
    this.#queries = {
      store: this.#store,
      broker,
      router: this.#router,
      maxOutputBytes: config.maxOutputBytes,
    };
    this.#transfers = {
      blobs: deps.blobs,
      store: this.#store,
      maxUploadBytes: config.maxUploadBytes,
      maxUploadsPerConnection: config.maxUploadsPerConnection,
      maxUploads: config.maxUploads,
      openUploads: { count: 0 },
      quotas: this.#quotas,
    };
    this.#feed = new DashboardFeed({
      serverId: deps.serverId,
      stats: this.stats,
      store: this.#store,
      workers: () => this.#workers.alive(),
      clientsByKind: () => this.#clientsByKind(),
      brokerConnected: () => this.#broker?.connected ?? false,
      readQueueDepths: () =>
        this.#broker === undefined
          ? Promise.reject(new ColmenaError("BROKER_UNAVAILABLE"))
          : this.#broker.queueDepths(),
    });
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
      batchLimit: (type) => this.#workers.batchLimit(type),
      bulkLimit: (type) => this.#workers.bulkLimit(type),
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
    this.#feed.start();
    if (!this.#config.sinHttp) {
      this.#http = serveHttp(this.#config.http, {
        draining: () => this.#unready,
        readiness: () => this.readiness(),
        metrics: () => this.metrics(),
        web: this.#webTarget(),
      });
    }
  }

  /** Without tokens, any request; with them, one whose `Authorization: Bearer` token is an `admin`'s. */
  #bearerIsAdmin(request: globalThis.Request): Promise<boolean> {
    const tokens = this.#deps.tokens;
    if (tokens === undefined) return Promise.resolve(true);
    const header = request.headers.get("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    return Promise.resolve(tokens.verify(match?.[1])?.role === "admin");
  }

  #webTarget(): WebTarget {
    const store = this.#store;
    return {
      serverId: this.serverId,
      authorizeAdmin: this.#deps.authorizeAdmin ?? ((request) => this.#bearerIsAdmin(request)),
      events: () => this.#feed.subscribe(),
      taskTypes: () => this.#taskTypes ??= this.#catalog.definitions().map(describeTaskType),
      inspect: async (idOrPrefix): Promise<TaskInspection | undefined> => {
        const task = await findTask(store, idOrPrefix);
        if (task === undefined) return undefined;
        const sub = await store.submission(task.taskId);
        if (sub === undefined) return { task };
        const { payload, payloadRef, timeoutMs, origin } = sub;
        return {
          task,
          submission: {
            ...(payload === undefined ? {} : { payload }),
            ...(payloadRef === undefined ? {} : { payloadRef }),
            timeoutMs,
            origin,
          },
        };
      },
      requeue: (taskId) => requeueFromDeadLetters([taskId], 1, { store, broker: this.#broker }),
      cancel: (idOrPrefix) => cancelTask(idOrPrefix, OPERATOR, this.#queries),
      webSocket: (request, remoteAddr) => this.#acceptWebSocket(request, remoteAddr),
    };
  }

  /** Serves an upgraded WebSocket as a client connection of kind `web`, under the same limits and cap. */
  #acceptWebSocket(request: globalThis.Request, remoteAddr: Deno.Addr): Response {
    const { socket, response } = Deno.upgradeWebSocket(request);
    const conn = webSocketConn(socket, {
      remoteAddr,
      maxQueuedBytes: 2 * this.#config.maxLineBytes + 65_536,
    });
    const client = new ClientConnection(conn, this.#config);
    client.fixedKind = "web";
    client.client = { name: "anonimo", kind: "web" };
    this.#serve(client);
    return response;
  }

  /** Whether the broker is connected and the task store answers a primary-key read in time. */
  async readiness(): Promise<Readiness> {
    const broker = this.#broker?.connected ?? false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), STORE_PROBE_MS);
    });
    const probe = this.#store.get(PROBE_TASK_ID).then(() => true, () => false);
    const almacen = await Promise.race([probe, timeout]);
    clearTimeout(timer);
    return { broker, almacen };
  }

  /** The Prometheus text of the counters and of the gauges read now (queue depths at most 1 s old). */
  async metrics(): Promise<string> {
    const queueDepths = await this.#feed.queueDepths();
    return renderMetrics(this.stats, {
      clientsByKind: this.#clientsByKind(),
      workersAlive: this.#workers.aliveCount(),
      tasksAwaiting: this.#awaitingResults(),
      brokerConnected: this.#broker?.connected ?? false,
      brokerReconnects: this.#broker?.reconnects ?? 0,
      queueDepths: queueDepths ?? undefined,
    });
  }

  #clientsByKind(): Map<string, number> {
    const clientsByKind = new Map<string, number>();
    for (const c of this.#connections) {
      clientsByKind.set(c.client.kind, (clientsByKind.get(c.client.kind) ?? 0) + 1);
    }
    return clientsByKind;
  }

  /** Resolves when the broker connection ends for good, with the reason. */
  brokerClosed(): Promise<void | Error> {
    return this.#broker?.closed() ?? Promise.resolve();
  }

  /**
   * Accepts connections until the listener closes. A failed accept (out of file descriptors, a peer that
   * reset before it was taken…) does not end it: it waits 10 ms, doubling up to 1 s while accepts keep
   * failing, and logs once per such episode.
   */
  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    let backoffMs = 0;
    while (!this.#stopping) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#stopping || err instanceof Deno.errors.BadResource) return;
        if (backoffMs === 0) {
          log.error("No se pueden aceptar conexiones por ahora; se sigue intentando", err);
        }
        backoffMs = Math.min(
          ACCEPT_BACKOFF_MAX_MS,
          backoffMs === 0 ? ACCEPT_BACKOFF_MIN_MS : backoffMs * 2,
        );
        await delay(backoffMs);
        continue;
      }
      if (backoffMs > 0) {
        log.info("Se vuelven a aceptar conexiones");
        backoffMs = 0;
      }
      this.#accept(conn);
    }
  }

  /** Takes a client's socket (TCP or TLS); under mutual TLS, `peer.subject` is its principal. */
  #accept(conn: ByteStream | Deno.TcpConn, peer: TlsPeer = {}): void {
    if ("setNoDelay" in conn) {
      try {
        conn.setNoDelay(true);
      } catch {
        // the peer is already gone
      }
    }
    const client = new ClientConnection(conn, this.#config);
    if (peer.subject !== undefined) {
      client.principal = { name: peer.subject, role: "cliente" };
      client.authenticated = true;
    }
    this.#serve(client);
  }

  /** Serves a connection (TCP, TLS or WebSocket), or drops it when the server is full or stopping. */
  #serve(client: ClientConnection): void {
    if (this.#connections.size >= this.#config.maxConnections || this.#stopping) {
      client.drop(new ColmenaError(this.#stopping ? "SHUTTING_DOWN" : "OVERLOADED"));
      return;
    }
    const address = client.address;
    const fromAddress = this.#perAddress.get(address) ?? 0;
    if (fromAddress >= this.#config.maxConnectionsPerAddress) {
      client.drop(
        new ColmenaError("OVERLOADED", {
          message:
            `Demasiadas conexiones desde esta dirección (máximo ${this.#config.maxConnectionsPerAddress})`,
        }),
      );
      return;
    }
    this.#perAddress.set(address, fromAddress + 1);
    if (this.#deps.tokens !== undefined && !client.authenticated) {
      // Until a token says who it is, the connection is nobody: no role, no task types.
      client.principal = { name: "", role: "cliente", types: [] };
      client.lineCapBeforeAuth = PRE_AUTH_MAX_LINE_BYTES;
    }
    this.#connections.add(client);
    this.stats.connections++;
    const admission = this.#admission;
    client.serve((framed) => admitFrame(client, framed, admission)).finally(() => {
      this.#connections.delete(client);
      const left = (this.#perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.#perAddress.set(address, left);
      else this.#perAddress.delete(address);
      abortUploads(client, this.#transfers);
      this.#router.connectionClosed(client);
    });
  }

  async #dispatch(client: ClientConnection, request: Request): Promise<void> {
    switch (request.type) {
      case "hello":
        if (
          !greet(client, request, {
            tokens: this.#deps.tokens,
            throttle: this.#throttle,
            principalFor: this.#deps.principalFor,
          })
        ) {
          return;
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
      case "submit_many":
        return await this.#submitter.submitMany(client, request);
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
        if (!this.#adminOnly(client, request.id)) return;
        return this.#workers.list(client, request);
      case "dlq":
        if (!this.#adminOnly(client, request.id)) return;
        return await deadLetters(client, request, {
          store: this.#store,
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

  /** Whether the connection acts for an admin; otherwise answers `FORBIDDEN`. */
  #adminOnly(client: ClientConnection, id: string): boolean {
    if (client.principal.role === "admin") return true;
    client.sendError(
      id,
      new ColmenaError("FORBIDDEN", {
        message: "Solo un token de administrador (--admin) puede consultar workers y la dlq",
      }),
    );
    return false;
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
      maxPendingBytes: c.maxPendingBytes,
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
      if (client.refusing) continue;
      if (client.awaitingAuth && now - client.openedAt > this.#config.authTimeoutMs) {
        client.refuse(
          null,
          new ColmenaError("UNAUTHORIZED", {
            message:
              `No llegó un hello con un token válido en ${this.#config.authTimeoutMs} ms; la conexión se cierra`,
          }),
        );
      } else if (client.writeStalled(now)) {
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
   * Stops gracefully: `/readyz` answers 503 first and, for `drainDelayMs`, the server still serves everything
   * (a balancer's health checks see it and send no new clients); then no new connections or tasks (a
   * connection that submits is ended with `SHUTTING_DOWN`, its submit unanswered, to be resent elsewhere);
   * waits up to `graceMs` for tasks this server's clients still await, then closes connections, the broker
   * and, last, HTTP.
   */
  async drain(graceMs = 5_000): Promise<void> {
    this.#unready = true;
    if (this.#config.drainDelayMs > 0) {
      log.info(`/readyz responde 503; se deja de aceptar en ${this.#config.drainDelayMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, this.#config.drainDelayMs));
    }
    log.info("Deja de aceptar conexiones y tareas; se entrega lo pendiente");
    this.#stopping = true;
    this.#feed.close();
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
    await this.#submitter.drain();
    await this.#broker?.drain();
    await this.#http?.shutdown();
  }

  #awaitingResults(): number {
    let n = 0;
    for (const client of this.#connections) n += client.awaiting.size;
    return n;
  }
}
