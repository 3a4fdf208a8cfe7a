/**
 * The server: accepts TCP clients, validates and enqueues their tasks, and routes results back to them.
 *
 * Results are consumed from `result_queue` by every server; a result that belongs to a task another server
 * accepted is forwarded to that server's reply queue, so each result reaches the connection that submitted
 * it. A result is pushed only after its task's `accepted`, and only once (duplicates are absorbed by the store).
 *
 * @module
 */
import { ColmenaError, toColmenaError } from "../shared/errors.ts";
import type { Framed } from "../shared/framing.ts";
import * as log from "../shared/log.ts";
import type { ServerBroker, TaskStore } from "../shared/ports.ts";
import {
  decodeRequest,
  PROTOCOL_VERSION,
  type Request,
  type ResultPush,
  type TaskView,
  validateTask,
} from "../shared/protocol.ts";
import { QUEUE_FORMAT, type ResultBatch, type TaskMessage } from "../shared/queue_messages.ts";
import { TASK_TYPES, TASKS } from "../shared/tasks.ts";
import type { ServerConfig } from "../shared/config.ts";
import { ClientConnection } from "./connection.ts";

/** Where a result goes once it arrives. */
interface PushTarget {
  readonly conn: ClientConnection;
  accepted: boolean;
  result?: ResultPush;
}

/** What the server needs besides its configuration. */
export interface ServerDeps {
  /** This server's id. */
  serverId: string;
  /** The broker, or a function that connects it given the result handler. */
  connectBroker: (onResults: (batch: ResultBatch) => Promise<void> | void) => Promise<ServerBroker>;
  /** The task store. */
  store: TaskStore;
}

/** Counters that describe the server's work so far. */
export interface ServerStats {
  connections: number;
  accepted: number;
  rejected: number;
  results: number;
  duplicates: number;
  forwarded: number;
}

/** A running server. */
export class ColmenaServer {
  readonly #config: ServerConfig;
  readonly #deps: ServerDeps;
  #broker: ServerBroker | undefined;
  #listener: Deno.TcpListener | undefined;
  readonly #connections = new Set<ClientConnection>();
  readonly #pushes = new Map<string, PushTarget>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #accepting: Promise<void> | undefined;
  #stopping = false;
  readonly stats: ServerStats = {
    connections: 0,
    accepted: 0,
    rejected: 0,
    results: 0,
    duplicates: 0,
    forwarded: 0,
  };

  constructor(config: ServerConfig, deps: ServerDeps) {
    this.#config = config;
    this.#deps = deps;
  }

  /** This server's id. */
  get serverId(): string {
    return this.#deps.serverId;
  }

  /** The bound address, once listening. */
  get addr(): Deno.NetAddr {
    if (this.#listener === undefined) {
      throw new TypeError("Cannot read addr: server is not listening");
    }
    return this.#listener.addr;
  }

  /** Connects the broker (prints `Conectado a RabbitMQ`), then listens (prints where). */
  async start(): Promise<void> {
    this.#broker = await this.#deps.connectBroker((batch) => this.#onResults(batch));
    log.info("Conectado a RabbitMQ");
    this.#listener = Deno.listen({ hostname: this.#config.host, port: this.#config.port });
    log.info("Servidor iniciado");
    log.info(`Escuchando en ${this.#config.host}:${this.#listener.addr.port}`);
    this.#sweeper = setInterval(() => this.#sweep(), 1_000);
    this.#accepting = this.#acceptLoop(this.#listener);
  }

  /** Resolves when the broker connection ends for good, with the reason. */
  brokerClosed(): Promise<void | Error> {
    return this.#broker?.closed() ?? Promise.resolve();
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const conn of listener) {
        this.#accept(conn);
      }
    } catch (err) {
      if (!this.#stopping) log.error("El servidor dejó de aceptar conexiones", err);
    }
  }

  #accept(conn: Deno.TcpConn): void {
    try {
      conn.setNoDelay(true);
    } catch {
      // the peer is already gone
    }
    const client = new ClientConnection(conn, this.#config);
    if (this.#connections.size >= this.#config.maxConnections || this.#stopping) {
      client.drop(new ColmenaError(this.#stopping ? "SHUTTING_DOWN" : "OVERLOADED"));
      return;
    }
    this.#connections.add(client);
    this.stats.connections++;
    client.serve((framed) => this.#onFrame(client, framed)).finally(() => {
      this.#connections.delete(client);
      for (const taskId of client.awaiting) this.#pushes.delete(taskId);
      client.awaiting.clear();
    });
  }

  #onFrame(client: ClientConnection, framed: Framed): void {
    if (framed.kind === "too_large") {
      this.#replyError(
        client,
        null,
        new ColmenaError("FRAME_TOO_LARGE", {
          message:
            `La línea (${framed.bytes} bytes) supera el máximo de ${this.#config.maxLineBytes}`,
        }),
      );
      return;
    }
    if (framed.bytes.length === 0) return; // blank lines are keep-alives
    const decoded = decodeRequest(framed.bytes, { maxDepth: this.#config.maxJsonDepth });
    if (!decoded.ok) {
      this.#replyError(client, decoded.id, decoded.error);
      return;
    }
    try {
      this.#dispatch(client, decoded.value);
    } catch (err) {
      const error = toColmenaError(err);
      if (error.code === "INTERNAL") log.error("Error interno atendiendo una petición", err);
      this.#replyError(client, decoded.value.id, error);
    }
  }

  #dispatch(client: ClientConnection, request: Request): void {
    switch (request.type) {
      case "hello":
        if (request.client) client.client = request.client;
        client.send({
          type: "welcome",
          id: request.id,
          serverId: this.serverId,
          protocol: PROTOCOL_VERSION,
          taskTypes: TASK_TYPES,
        });
        return;
      case "submit":
        this.#submit(client, request);
        return;
      case "status":
        this.#status(client, request);
        return;
      case "ping":
        client.send({ type: "pong", id: request.id });
        return;
      default: {
        const unreachable: never = request;
        throw new TypeError(`Cannot dispatch frame: ${JSON.stringify(unreachable)}`);
      }
    }
  }

  #submit(client: ClientConnection, request: Extract<Request, { type: "submit" }>): void {
    const valid = validateTask(request.task);
    if (!valid.ok) return this.#replyError(client, request.id, valid.error);
    const broker = this.#broker;
    if (broker === undefined || !broker.connected || this.#stopping) {
      return this.#replyError(
        client,
        request.id,
        new ColmenaError(this.#stopping ? "SHUTTING_DOWN" : "BROKER_UNAVAILABLE"),
      );
    }
    if (client.pending >= this.#config.maxPending) {
      return this.#replyError(
        client,
        request.id,
        new ColmenaError("OVERLOADED", {
          message:
            `Demasiadas peticiones sin responder en esta conexión (máximo ${this.#config.maxPending})`,
        }),
      );
    }
    const taskId = crypto.randomUUID();
    const type = valid.value.type;
    const priority = request.options?.priority ?? 0;
    const submittedAt = new Date().toISOString();
    const message: TaskMessage = {
      v: QUEUE_FORMAT,
      taskId,
      type,
      payload: valid.value.payload,
      client: client.client,
      origin: this.serverId,
      priority,
      timeoutMs: request.options?.timeoutMs ?? TASKS[type].defaultTimeoutMs,
      submittedAt,
      attempt: 1,
    };
    const view: TaskView = {
      taskId,
      taskType: type,
      status: "queued",
      priority,
      client: { ...client.client },
      submittedAt,
    };
    const store = this.#deps.store;
    store.create(view);
    const target: PushTarget = { conn: client, accepted: false };
    this.#pushes.set(taskId, target);
    client.awaiting.add(taskId);
    client.pending++;
    broker.publishTask(message).then(() => {
      client.pending--;
      this.stats.accepted++;
      target.accepted = true;
      client.send({ type: "accepted", id: request.id, taskId });
      if (target.result !== undefined) {
        client.send(target.result);
        this.#pushes.delete(taskId);
        client.awaiting.delete(taskId);
      }
    }, (err: unknown) => {
      client.pending--;
      this.stats.rejected++;
      this.#pushes.delete(taskId);
      client.awaiting.delete(taskId);
      store.remove(taskId);
      this.#replyError(client, request.id, toColmenaError(err));
    });
  }

  #status(client: ClientConnection, request: Extract<Request, { type: "status" }>): void {
    const found = this.#deps.store.get(request.taskId);
    Promise.resolve(found).then((view) => {
      if (view === undefined) {
        this.#replyError(
          client,
          request.id,
          new ColmenaError("NOT_FOUND", {
            message: `No existe ninguna tarea con id "${request.taskId.slice(0, 128)}"`,
          }),
        );
        return;
      }
      client.send({ type: "task", id: request.id, ...view });
    }, (err: unknown) => this.#replyError(client, request.id, toColmenaError(err)));
  }

  #replyError(client: ClientConnection, id: string | null, error: ColmenaError): void {
    client.send({ type: "error", id, ...error.toWire() });
  }

  async #onResults(batch: ResultBatch): Promise<void> {
    const store = this.#deps.store;
    const foreign = new Map<string, ResultBatch>();
    const foreignOf = (origin: string): ResultBatch => {
      let b = foreign.get(origin);
      if (b === undefined) {
        b = { v: QUEUE_FORMAT, started: [], results: [] };
        foreign.set(origin, b);
      }
      return b;
    };
    for (const notice of batch.started) {
      if (notice.origin === this.serverId) await store.markStarted(notice);
      else foreignOf(notice.origin).started.push(notice);
    }
    for (const result of batch.results) {
      if (result.origin !== this.serverId) {
        foreignOf(result.origin).results.push(result);
        continue;
      }
      const first = await store.complete(result);
      if (!first) {
        this.stats.duplicates++;
        continue;
      }
      this.stats.results++;
      const target = this.#pushes.get(result.taskId);
      if (target === undefined) continue;
      const push: ResultPush = {
        type: "result",
        taskId: result.taskId,
        taskType: result.taskType,
        status: result.status,
        worker: result.worker,
        durationMs: result.durationMs,
      };
      if (result.output !== undefined) push.output = result.output;
      if (result.error !== undefined) push.error = result.error;
      if (target.accepted) {
        target.conn.send(push);
        this.#pushes.delete(result.taskId);
        target.conn.awaiting.delete(result.taskId);
      } else {
        target.result = push;
      }
    }
    if (foreign.size > 0 && this.#broker !== undefined) {
      const broker = this.#broker;
      await Promise.all(
        [...foreign].map(([origin, b]) => {
          this.stats.forwarded += b.results.length;
          return broker.forwardResults(origin, b);
        }),
      );
    }
  }

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
      }
    }
  }

  /**
   * Stops gracefully: no new connections or tasks; waits up to `graceMs` for tasks this server's clients
   * still await, then closes connections and the broker.
   */
  async drain(graceMs = 5_000): Promise<void> {
    this.#stopping = true;
    this.#listener?.close();
    await this.#accepting;
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && this.#awaitingResults() > 0) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    clearInterval(this.#sweeper);
    for (const client of this.#connections) client.end(new ColmenaError("SHUTTING_DOWN"));
    await Promise.all([...this.#connections].map((c) => c.done()));
    await this.#broker?.drain();
  }

  #awaitingResults(): number {
    let n = 0;
    for (const client of this.#connections) n += client.awaiting.size;
    return n;
  }
}
