/**
 * The server: accepts TCP clients, validates, records and enqueues their tasks, and routes results back.
 *
 * Every server consumes `result_queue` and records what it consumes in the task store. A result is pushed to
 * the connection waiting for it on this server; one that belongs to a task another server accepted is
 * forwarded to that server's reply queue, so each result reaches the connection that submitted it. A result
 * is pushed only after its task's `accepted`, and once per connection (duplicates are absorbed by the store).
 *
 * @module
 */
import { ColmenaError, toColmenaError } from "../shared/errors.ts";
import type { Framed } from "../shared/framing.ts";
import * as log from "../shared/log.ts";
import { Buffer } from "node:buffer";
import type { BlobStore, NewTask, ServerBroker, TaskStore } from "../shared/ports.ts";
import {
  decodeRequest,
  FINAL_STATUSES,
  PROTOCOL_VERSION,
  type Request,
  type ResultPush,
  type TaskView,
  validateTask,
} from "../shared/protocol.ts";
import {
  type Heartbeat,
  QUEUE_FORMAT,
  type ResultBatch,
  type ResultMessage,
  type TaskMessage,
} from "../shared/queue_messages.ts";
import { TASK_TYPES, TASKS } from "../shared/tasks.ts";
import type { ServerConfig } from "../shared/config.ts";
import { ClientConnection, type Upload } from "./connection.ts";
import { UPLOADS_PREFIX } from "./stores.ts";

function abortUpload(upload: Upload): void {
  upload.writer.abort(new ColmenaError("CONNECTION_CLOSED")).catch(() => {});
}

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
  /** Connects the broker, given the handlers of what comes from it. */
  connectBroker: (handlers: {
    onResults: (batch: ResultBatch) => Promise<void>;
    onHeartbeat: (heartbeat: Heartbeat) => void;
  }) => Promise<ServerBroker>;
  /** The task store. */
  store: TaskStore;
  /** The object store: large payloads, uploaded files, large outputs. */
  blobs: BlobStore;
}

const UPLOAD_REF = new RegExp(`^${UPLOADS_PREFIX}[0-9a-f-]{36}$`);
const OUTPUT_REF = /^tasks\/[0-9a-f-]{36}\/output$/;
const DOWNLOAD_CHUNK_BYTES = 768 * 1024;
/** Records a `watch` reads at once. */
const WATCH_BATCH = 16;
/** Request types answered before their handler returns: they take no `maxPending` slot. */
const ANSWERED_AT_ONCE: ReadonlySet<Request["type"]> = new Set(["hello", "ping", "workers"]);
const encoder = new TextEncoder();

/** Counters that describe the server's work so far. */
export interface ServerStats {
  connections: number;
  accepted: number;
  rejected: number;
  results: number;
  duplicates: number;
  forwarded: number;
  republished: number;
}

/** Heartbeats older than this make a worker count as gone. */
const WORKER_ALIVE_MS = 15_000;

function isFinal(view: TaskView): boolean {
  return FINAL_STATUSES.includes(view.status);
}

function pushFromResult(result: ResultMessage): ResultPush {
  const push: ResultPush = {
    type: "result",
    taskId: result.taskId,
    taskType: result.taskType,
    status: result.status,
    worker: result.worker,
    durationMs: result.durationMs,
    attempts: result.attempt,
  };
  if (result.output !== undefined) push.output = result.output;
  if (result.outputRef !== undefined) push.outputRef = result.outputRef;
  if (result.outputBytes !== undefined) push.outputBytes = result.outputBytes;
  if (result.error !== undefined) push.error = result.error;
  return push;
}

function pushFromView(view: TaskView): ResultPush {
  const push: ResultPush = {
    type: "result",
    taskId: view.taskId,
    taskType: view.taskType,
    status: view.status === "succeeded"
      ? "succeeded"
      : view.status === "cancelled"
      ? "cancelled"
      : "failed",
    worker: view.worker ?? "",
    durationMs: view.durationMs ?? 0,
  };
  if (view.attempts !== undefined && view.attempts > 0) push.attempts = view.attempts;
  if (view.output !== undefined) push.output = view.output;
  if (view.outputRef !== undefined) push.outputRef = view.outputRef;
  // A task cancelled while it waited for a retry still holds the failed attempt's error: it is CANCELLED.
  if (view.status === "cancelled") push.error = new ColmenaError("CANCELLED").toWire();
  else if (view.error !== undefined) push.error = view.error;
  return push;
}

/** A running server. */
export class ColmenaServer {
  readonly #config: ServerConfig;
  readonly #deps: ServerDeps;
  #broker: ServerBroker | undefined;
  #listener: Deno.TcpListener | undefined;
  readonly #connections = new Set<ClientConnection>();
  readonly #pushes = new Map<string, PushTarget>();
  /** Tasks watched after a reconnect, whose result may be consumed by another server: polled in the store. */
  readonly #watched = new Set<string>();
  /** The last `watch` of each connection, which the next one waits for. */
  readonly #watching = new WeakMap<ClientConnection, Promise<void>>();
  readonly #workers = new Map<string, Heartbeat & { lastSeen: number }>();
  /** Publishes under way, by task id: a resubmit with the same key waits for the first one's outcome. */
  readonly #inFlight = new Map<string, Promise<void>>();
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
    republished: 0,
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
    this.#broker = await this.#deps.connectBroker({
      onResults: (batch) => this.#onResults(batch),
      onHeartbeat: (hb) =>
        this.#workers.set(`${hb.worker}@${hb.host}:${hb.pid}`, { ...hb, lastSeen: Date.now() }),
    });
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
      for (const upload of client.uploads.values()) abortUpload(upload);
      client.uploads.clear();
      for (const taskId of client.awaiting) {
        if (this.#pushes.get(taskId)?.conn === client) this.#pushes.delete(taskId);
      }
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
    if (!client.takeToken(this.#config.rateLimit, this.#config.rateBurst)) {
      this.#replyError(
        client,
        decoded.value.id,
        new ColmenaError("RATE_LIMITED", {
          message:
            `Más de ${this.#config.rateLimit} peticiones por segundo en esta conexión; espere un poco`,
        }),
      );
      return;
    }
    // Requests answered on the spot need no slot; the rest hold one until answered.
    const slot = !ANSWERED_AT_ONCE.has(decoded.value.type);
    if (slot && client.pending >= this.#config.maxPending) {
      this.#replyError(
        client,
        decoded.value.id,
        new ColmenaError("OVERLOADED", {
          message:
            `Demasiadas peticiones sin responder en esta conexión (máximo ${this.#config.maxPending})`,
        }),
      );
      return;
    }
    if (slot) client.pending++;
    this.#dispatch(client, decoded.value).catch((err: unknown) => {
      const error = toColmenaError(err);
      if (error.code === "INTERNAL") log.error("Error interno atendiendo una petición", err);
      this.#replyError(client, decoded.value.id, error);
    }).finally(() => {
      if (slot) client.pending--;
    });
  }

  async #dispatch(client: ClientConnection, request: Request): Promise<void> {
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
        return await this.#submit(client, request);
      case "status":
        return await this.#status(client, request);
      case "ping":
        client.send({ type: "pong", id: request.id });
        return;
      case "cancel":
        return await this.#cancel(client, request);
      case "watch":
        return await this.#watch(client, request);
      case "list":
        return await this.#list(client, request);
      case "workers":
        return this.#listWorkers(client, request);
      case "dlq":
        return await this.#dlq(client, request);
      case "upload":
        return await this.#upload(client, request);
      case "download":
        return await this.#download(client, request);
      default: {
        const unreachable: never = request;
        throw new TypeError(`Cannot dispatch frame: ${JSON.stringify(unreachable)}`);
      }
    }
  }

  async #submit(
    client: ClientConnection,
    request: Extract<Request, { type: "submit" }>,
  ): Promise<void> {
    const fileSpec = request.task.file;
    // With a file, the payload is checked with an empty string standing in for the file's field.
    const given = fileSpec === undefined ? request.task.payload : {
      ...(typeof request.task.payload === "object" && request.task.payload !== null
        ? request.task.payload
        : {}),
      [fileSpec.field]: "",
    };
    const valid = validateTask({ type: request.task.type, payload: given });
    if (!valid.ok) return this.#replyError(client, request.id, valid.error);
    const broker = this.#broker;
    if (broker === undefined || !broker.connected || this.#stopping) {
      return this.#replyError(
        client,
        request.id,
        new ColmenaError(this.#stopping ? "SHUTTING_DOWN" : "BROKER_UNAVAILABLE"),
      );
    }
    const type = valid.value.type;
    const file = request.task.file;
    if (file !== undefined && !UPLOAD_REF.test(file.ref)) {
      return this.#replyError(
        client,
        request.id,
        new ColmenaError("INVALID_PAYLOAD", {
          message: `"task.file.ref" no es una referencia de fichero subido: "${
            file.ref.slice(0, 64)
          }"`,
        }),
      );
    }
    const options = request.options ?? {};
    const taskId = crypto.randomUUID();
    let payload = valid.value.payload;
    if (file !== undefined) {
      const { [file.field]: _placeholder, ...rest } = payload as Record<string, unknown>;
      payload = rest;
    }
    let payloadRef: string | undefined;
    const payloadJson = JSON.stringify(payload);
    if (payloadJson.length > this.#config.claimCheckBytes) {
      // Claim check: the payload travels as an object, the message only names it.
      payloadRef = `tasks/${taskId}/payload`;
      await this.#deps.blobs.put(payloadRef, encoder.encode(payloadJson));
      payload = undefined;
    }
    const newTask: NewTask = {
      taskId,
      taskType: type,
      priority: options.priority ?? 0,
      client: { ...client.client },
      submittedAt: new Date().toISOString(),
      origin: this.serverId,
      ...(payloadRef === undefined ? { payload } : { payloadRef }),
      ...(file === undefined ? {} : { fileRef: file.ref }),
      maxAttempts: options.maxAttempts ?? this.#config.maxAttempts,
      timeoutMs: options.timeoutMs ?? TASKS[type].defaultTimeoutMs,
      ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
    };
    const store = this.#deps.store;
    const { taskId: recorded, created } = await store.create(newTask);
    const message: TaskMessage = {
      v: QUEUE_FORMAT,
      taskId: recorded,
      type,
      payload,
      client: newTask.client,
      origin: this.serverId,
      priority: newTask.priority,
      timeoutMs: newTask.timeoutMs,
      submittedAt: newTask.submittedAt,
      attempt: 1,
      maxAttempts: newTask.maxAttempts,
      deliveries: 1,
      ...(payloadRef === undefined ? {} : { payloadRef }),
      ...(file === undefined ? {} : { file }),
    };
    if (!created) return await this.#resubmitted(client, request.id, { broker, message });
    const target: PushTarget = { conn: client, accepted: false };
    this.#pushes.set(taskId, target);
    client.awaiting.add(taskId);
    const publishing = this.#publishSurely(broker, message);
    this.#inFlight.set(taskId, publishing.catch(() => {}));
    try {
      await publishing;
    } catch (err) {
      this.stats.rejected++;
      this.#inFlight.delete(taskId);
      if (this.#pushes.get(taskId) === target) this.#pushes.delete(taskId);
      client.awaiting.delete(taskId);
      await store.remove(taskId).catch((e) =>
        log.error("No se pudo borrar una tarea rechazada", e)
      );
      if (payloadRef !== undefined) await this.#deps.blobs.delete([payloadRef]).catch(() => {});
      throw err;
    }
    this.#inFlight.delete(taskId);
    this.stats.accepted++;
    target.accepted = true;
    client.send({ type: "accepted", id: request.id, taskId });
    if (target.result !== undefined) this.#deliver(taskId, target, target.result);
  }

  /**
   * Publishes a task; when the confirm fails because the broker went away, waits for the reconnect and
   * publishes it again under the same id (a copy that did reach the queue is absorbed as a duplicate),
   * until `publishRetryMs` has passed.
   */
  async #publishSurely(broker: ServerBroker, message: TaskMessage): Promise<void> {
    const deadline = Date.now() + this.#config.publishRetryMs;
    for (let attempt = 1;; attempt++) {
      try {
        await broker.publishTask(message);
        if (attempt > 1) this.stats.republished++;
        return;
      } catch (err) {
        const left = deadline - Date.now();
        if (this.#stopping || left <= 0 || !(await broker.waitConnected(left))) throw err;
        log.warn(`Confirmación perdida de la tarea ${message.taskId}; se vuelve a publicar`);
      }
    }
  }

  /**
   * A submit that reused an idempotency key: the first task's id, and its result if it has one. `message` is
   * the task as this submit would publish it, under the first task's id.
   */
  async #resubmitted(
    client: ClientConnection,
    requestId: string,
    { broker, message }: { broker: ServerBroker; message: TaskMessage },
  ): Promise<void> {
    const taskId = message.taskId;
    await this.#inFlight.get(taskId);
    const view = await this.#deps.store.get(taskId);
    if (view === undefined) {
      // The first submit with this key failed meanwhile, and its record is gone.
      throw new ColmenaError("BROKER_UNAVAILABLE");
    }
    if (view.status === "queued" && (view.attempts ?? 0) === 0) {
      // Never seen running: the first submit may have died with its server between recording the task and
      // the broker's confirm, so that no copy is queued. Publish it again under the same id; if a copy was
      // queued after all, the task runs twice and the store keeps one result.
      await this.#publishSurely(broker, message);
    } else if (message.payloadRef !== undefined) {
      // The object stored for this submit is not needed.
      await this.#deps.blobs.delete([message.payloadRef]).catch(() => {});
    }
    client.send({ type: "accepted", id: requestId, taskId });
    if (view !== undefined && isFinal(view)) {
      client.send(pushFromView(view));
      return;
    }
    this.#pushes.set(taskId, { conn: client, accepted: true });
    client.awaiting.add(taskId);
    this.#watched.add(taskId);
  }

  async #status(
    client: ClientConnection,
    request: Extract<Request, { type: "status" }>,
  ): Promise<void> {
    const view = await this.#deps.store.get(request.taskId);
    if (view === undefined) return this.#notFound(client, request.id, request.taskId);
    client.send({ type: "task", id: request.id, ...view });
  }

  #notFound(client: ClientConnection, id: string, taskId: string): void {
    this.#replyError(
      client,
      id,
      new ColmenaError("NOT_FOUND", {
        message: `No existe ninguna tarea con id "${taskId.slice(0, 128)}"`,
      }),
    );
  }

  async #cancel(
    client: ClientConnection,
    request: Extract<Request, { type: "cancel" }>,
  ): Promise<void> {
    const outcome = await this.#deps.store.cancel(request.taskId);
    if (outcome === "not_found") return this.#notFound(client, request.id, request.taskId);
    const view = await this.#deps.store.get(request.taskId);
    client.send({
      type: "cancelled",
      id: request.id,
      taskId: request.taskId,
      cancelled: outcome === "cancelled",
      status: view?.status ?? "cancelled",
    });
    if (outcome !== "cancelled") return;
    this.#broker?.publishControl({ type: "cancel", taskIds: [request.taskId] }).catch((err) =>
      log.error("No se pudo avisar a los workers de una cancelación", err)
    );
    const target = this.#pushes.get(request.taskId);
    if (target !== undefined && view !== undefined) {
      this.#deliver(request.taskId, target, pushFromView(view));
    }
  }

  /** A connection's `watch`es run one after another, so that it holds one batch of records at a time. */
  #watch(client: ClientConnection, request: Extract<Request, { type: "watch" }>): Promise<void> {
    const run = (this.#watching.get(client) ?? Promise.resolve()).then(() =>
      this.#watchNow(client, request)
    );
    this.#watching.set(client, run.catch(() => {}));
    return run;
  }

  async #watchNow(
    client: ClientConnection,
    request: Extract<Request, { type: "watch" }>,
  ): Promise<void> {
    const store = this.#deps.store;
    const found: string[] = [];
    const missing: string[] = [];
    const finished: string[] = [];
    const pending: string[] = [];
    // A few records at a time, keeping only their ids: a watch of many tasks with large outputs (or of one
    // id many times) must not hold every output in memory at once.
    const ids = [...new Set(request.taskIds)];
    for (let i = 0; i < ids.length; i += WATCH_BATCH) {
      if (client.closed) return;
      const chunk = ids.slice(i, i + WATCH_BATCH);
      const views = await Promise.all(chunk.map((taskId) => store.get(taskId)));
      chunk.forEach((taskId, k) => {
        const view = views[k];
        if (view === undefined) return missing.push(taskId);
        found.push(taskId);
        return isFinal(view) ? finished.push(taskId) : pending.push(taskId);
      });
    }
    for (const taskId of pending) {
      this.#pushes.set(taskId, { conn: client, accepted: true });
      client.awaiting.add(taskId);
      this.#watched.add(taskId); // one that ended meanwhile is found in the store by the next poll
    }
    client.send({ type: "watching", id: request.id, taskIds: found, missing });
    const flushAt = Math.min(4 * DOWNLOAD_CHUNK_BYTES, this.#config.maxOutputBytes / 2);
    for (const taskId of finished) {
      // A reader takes what is queued before more is loaded; one that never reads is dropped meanwhile.
      if (client.queuedChars > flushAt) await client.flushed();
      if (client.closed) return;
      const view = await store.get(taskId);
      if (view !== undefined) client.send(pushFromView(view));
    }
  }

  async #list(
    client: ClientConnection,
    request: Extract<Request, { type: "list" }>,
  ): Promise<void> {
    const f = request.filter ?? {};
    const page = await this.#deps.store.list({
      limit: request.limit,
      ...(f.statuses === undefined ? {} : { statuses: f.statuses }),
      ...(f.taskType === undefined ? {} : { taskType: f.taskType }),
      ...(f.clientKind === undefined ? {} : { clientKind: f.clientKind }),
      ...(f.clientName === undefined ? {} : { clientName: f.clientName }),
      ...(f.since === undefined ? {} : { since: f.since }),
      ...(f.until === undefined ? {} : { until: f.until }),
      ...(request.cursor === undefined ? {} : { cursor: request.cursor }),
    });
    client.send({
      type: "tasks",
      id: request.id,
      items: [...page.items],
      nextCursor: page.nextCursor,
    });
  }

  #listWorkers(client: ClientConnection, request: Extract<Request, { type: "workers" }>): void {
    const now = Date.now();
    const workers = [];
    for (const [key, w] of this.#workers) {
      if (now - w.lastSeen > 4 * WORKER_ALIVE_MS) this.#workers.delete(key);
      else if (now - w.lastSeen <= WORKER_ALIVE_MS) {
        workers.push({
          worker: w.worker,
          host: w.host,
          pid: w.pid,
          concurrency: w.concurrency,
          inProgress: w.inProgress,
          processed: w.processed,
          failed: w.failed,
          startedAt: w.startedAt,
          lastSeen: new Date(w.lastSeen).toISOString(),
          stopping: w.stopping,
          types: w.types,
        });
      }
    }
    workers.sort((a, b) => a.worker.localeCompare(b.worker));
    client.send({ type: "workers", id: request.id, workers });
  }

  async #dlq(client: ClientConnection, request: Extract<Request, { type: "dlq" }>): Promise<void> {
    const broker = this.#broker;
    if (broker === undefined || !broker.connected) {
      return this.#replyError(client, request.id, new ColmenaError("BROKER_UNAVAILABLE"));
    }
    if (request.action === "list") {
      const entries = await broker.listDeadLetters(request.limit);
      client.send({ type: "dlq", id: request.id, entries });
      return;
    }
    const store = this.#deps.store;
    // Each record is reopened before its task is republished, so the new attempt's result is not taken
    // for a duplicate; only tasks really found in the dead-letter queue are touched.
    const moved = await broker.requeueDeadLetters(
      request.taskIds,
      request.limit,
      (task) => store.reopen(task.taskId),
    );
    client.send({ type: "dlq", id: request.id, requeued: moved.map((t) => t.taskId) });
  }

  /** Takes one piece of an uploaded file, streaming it into the object store in order. */
  #upload(client: ClientConnection, request: Extract<Request, { type: "upload" }>): Promise<void> {
    let uploadId = request.uploadId;
    let upload: Upload | undefined;
    if (uploadId === undefined) {
      uploadId = crypto.randomUUID();
      const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
      const ref = `${UPLOADS_PREFIX}${uploadId}`;
      const stored = this.#deps.blobs.put(ref, readable);
      stored.catch(() => {}); // awaited on the last piece; an abort is no unhandled rejection
      upload = { ref, writer: writable.getWriter(), stored, bytes: 0, chain: Promise.resolve() };
      client.uploads.set(uploadId, upload);
    } else {
      upload = client.uploads.get(uploadId);
      if (upload === undefined) {
        this.#replyError(
          client,
          request.id,
          new ColmenaError("NOT_FOUND", {
            message: `No hay ninguna subida en curso con id "${
              uploadId.slice(0, 64)
            }" en esta conexión`,
          }),
        );
        return Promise.resolve();
      }
    }
    const id = uploadId;
    const current = upload;
    const step = current.chain.then(async () => {
      const piece = new Uint8Array(Buffer.from(request.data, "base64"));
      current.bytes += piece.length;
      if (current.bytes > this.#config.maxUploadBytes) {
        client.uploads.delete(id);
        abortUpload(current);
        throw new ColmenaError("FRAME_TOO_LARGE", {
          message: `El fichero supera el máximo de ${this.#config.maxUploadBytes} bytes`,
        });
      }
      if (piece.length > 0) await current.writer.write(piece);
      if (!request.last) {
        client.send({ type: "uploading", id: request.id, uploadId: id, bytes: current.bytes });
        return;
      }
      client.uploads.delete(id);
      await current.writer.close();
      await current.stored;
      client.send({
        type: "uploaded",
        id: request.id,
        uploadId: id,
        ref: current.ref,
        bytes: current.bytes,
      });
    });
    current.chain = step.catch(() => {});
    return step;
  }

  /** Streams an object (a large output) back in `chunk` frames, waiting for slow readers. */
  async #download(
    client: ClientConnection,
    request: Extract<Request, { type: "download" }>,
  ): Promise<void> {
    if (!OUTPUT_REF.test(request.ref)) {
      return this.#replyError(
        client,
        request.id,
        new ColmenaError("NOT_FOUND", {
          message: `"${request.ref.slice(0, 128)}" no es una salida descargable`,
        }),
      );
    }
    const stream = await this.#deps.blobs.stream(request.ref);
    let seq = 0;
    let held = Buffer.alloc(0);
    const send = async (bytes: Buffer, last: boolean) => {
      client.send({
        type: "chunk",
        id: request.id,
        seq: seq++,
        data: bytes.toString("base64"),
        last,
      });
      if (client.queuedChars > 4 * DOWNLOAD_CHUNK_BYTES) await client.flushed();
    };
    for await (const part of stream) {
      if (client.closed) return; // leaving the loop cancels the stream
      held = Buffer.concat([held, part]);
      while (held.length >= DOWNLOAD_CHUNK_BYTES) {
        await send(held.subarray(0, DOWNLOAD_CHUNK_BYTES), false);
        held = held.subarray(DOWNLOAD_CHUNK_BYTES);
      }
    }
    await send(held, true);
  }

  #replyError(client: ClientConnection, id: string | null, error: ColmenaError): void {
    client.send({ type: "error", id, ...error.toWire() });
  }

  /** Sends a result to its connection once, after `accepted`. */
  #deliver(taskId: string, target: PushTarget, push: ResultPush): void {
    if (!target.accepted) {
      target.result = push;
      return;
    }
    if (this.#pushes.get(taskId) === target) this.#pushes.delete(taskId);
    this.#watched.delete(taskId);
    target.conn.awaiting.delete(taskId);
    target.conn.send(push);
  }

  async #onResults(batch: ResultBatch): Promise<void> {
    const store = this.#deps.store;
    const foreign = new Map<string, ResultBatch>();
    const foreignOf = (origin: string): ResultBatch => {
      let b = foreign.get(origin);
      if (b === undefined) {
        b = { v: QUEUE_FORMAT, forwarded: true, started: [], retrying: [], results: [] };
        foreign.set(origin, b);
      }
      return b;
    };
    const forwardable = (origin: string) => !batch.forwarded && origin !== this.serverId;
    await Promise.all([
      ...batch.started.map((n) => store.markStarted(n)),
      ...batch.retrying.map((n) => store.markRetrying(n.taskId, n.error)),
    ]);
    for (const n of batch.started) if (forwardable(n.origin)) foreignOf(n.origin).started.push(n);
    for (const n of batch.retrying) if (forwardable(n.origin)) foreignOf(n.origin).retrying.push(n);
    const firsts = await Promise.all(batch.results.map((r) => store.complete(r)));
    batch.results.forEach((result, i) => {
      // A duplicate is routed like a first result: a connection still waiting, or a forward that failed
      // after the record was written, would otherwise never get it. Each push target takes one result.
      if (firsts[i]) this.stats.results++;
      else if (!batch.forwarded) this.stats.duplicates++;
      const target = this.#pushes.get(result.taskId);
      if (target !== undefined) this.#deliver(result.taskId, target, pushFromResult(result));
      else if (forwardable(result.origin)) foreignOf(result.origin).results.push(result);
    });
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
    if (this.#watched.size > 0) this.#pollWatched();
  }

  #polling = false;

  /** Results of watched tasks may be consumed by another server: look for them in the store. */
  async #pollWatched(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      for (const taskId of [...this.#watched]) {
        const target = this.#pushes.get(taskId);
        if (target === undefined || target.conn.closed) {
          this.#watched.delete(taskId);
          continue;
        }
        const view = await this.#deps.store.get(taskId);
        if (view !== undefined && isFinal(view)) this.#deliver(taskId, target, pushFromView(view));
      }
    } catch (err) {
      log.error("No se pudo consultar el almacén por tareas vigiladas", err);
    } finally {
      this.#polling = false;
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
