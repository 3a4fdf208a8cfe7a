/**
 * The RabbitMQ adapter: the only file that imports amqplib.
 *
 * It owns one recovering connection per process (amqplib's `recovery`), re-declares the topology and
 * re-creates channels and consumers after every reconnect, uses publisher confirms on every publish, and
 * translates amqplib failures into `BROKER_UNAVAILABLE`.
 *
 * Topology, for task queue `T` and result queue `R`:
 * - `T`: durable, priorities 0–9, dead-letters to `T.dlq`.
 * - `T.dlq`: durable; task messages no worker could read (later also tasks that failed for good).
 * - `R`: durable; result batches from workers, consumed by every server.
 * - `R.replies`: direct exchange; results that a server consumed for another server go there, routed by the
 *   origin server's id to its queue `R.server.<id>` (durable, removed 5 minutes after its server went away).
 * - `T.retry.<ms>`: durable, declared on first use; a failed attempt waits there `<ms>` (queue TTL), then
 *   dead-letters back to `T` for its next attempt.
 * - `T.control`: fanout exchange from servers to every worker (cancellations); each worker binds its own
 *   exclusive queue.
 * - `R.heartbeats`: fanout exchange from workers to every server; transient messages, exclusive queues.
 *
 * @module
 */
import amqp from "amqplib";
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from "amqplib";
import { Buffer } from "node:buffer";
import { ColmenaError } from "../errors.ts";
import * as log from "../log.ts";
import type {
  ReportBatch,
  ResultBatchHandler,
  ServerBroker,
  TaskDelivery,
  WorkerBroker,
} from "../ports.ts";
import {
  ControlMessage,
  Heartbeat,
  QUEUE_FORMAT,
  ResultBatch,
  TaskMessage,
} from "../queue_messages.ts";
import type { WireError } from "../errors.ts";

/** Queue names shared by servers and workers. */
export interface QueueNames {
  /** The task queue. @defaultValue `"task_queue"` */
  taskQueue: string;
  /** The result queue. @defaultValue `"result_queue"` */
  resultQueue: string;
}

/** Options common to both sides. */
export interface RabbitOptions extends QueueNames {
  /** The AMQP URL. */
  url: string;
  /** Connection attempts before giving up at start-up; afterwards it retries for ever. @defaultValue `4` */
  initialRetries?: number;
}

/** The dead-letter queue of a task queue. */
export function deadLetterQueue(taskQueue: string): string {
  return `${taskQueue}.dlq`;
}

function repliesExchange(resultQueue: string): string {
  return `${resultQueue}.replies`;
}

function serverQueue(resultQueue: string, serverId: string): string {
  return `${resultQueue}.server.${serverId}`;
}

function retryQueue(taskQueue: string, delayMs: number): string {
  return `${taskQueue}.retry.${delayMs}`;
}

function controlExchange(taskQueue: string): string {
  return `${taskQueue}.control`;
}

function heartbeatExchange(resultQueue: string): string {
  return `${resultQueue}.heartbeats`;
}

/** Longest wait in a retry queue. */
export const MAX_RETRY_DELAY_MS = 300_000;

/** Header names on dead-lettered tasks. */
const DEAD_HEADERS = {
  code: "x-colmena-error-code",
  message: "x-colmena-error-message",
  at: "x-colmena-dead-at",
} as const;

/** Declares the shared topology; idempotent, run after every (re)connect. */
async function declareTopology(ch: Channel, names: QueueNames): Promise<void> {
  await ch.assertQueue(names.taskQueue, {
    durable: true,
    arguments: {
      "x-max-priority": 9,
      "x-dead-letter-exchange": "",
      "x-dead-letter-routing-key": deadLetterQueue(names.taskQueue),
    },
  });
  await ch.assertQueue(deadLetterQueue(names.taskQueue), { durable: true });
  await ch.assertQueue(names.resultQueue, { durable: true });
  await ch.assertExchange(repliesExchange(names.resultQueue), "direct", { durable: true });
  await ch.assertExchange(controlExchange(names.taskQueue), "fanout", { durable: true });
  await ch.assertExchange(heartbeatExchange(names.resultQueue), "fanout", { durable: true });
}

function taskProps(task: TaskMessage): {
  persistent: true;
  priority: number;
  messageId: string;
  contentType: string;
} {
  return {
    persistent: true,
    priority: task.priority,
    messageId: task.taskId,
    contentType: "application/json",
  };
}

/** Publishes on a confirm channel and resolves on the broker's confirm; `BROKER_UNAVAILABLE` otherwise. */
function confirmPublish(
  ch: ConfirmChannel | undefined,
  exchange: string,
  routingKey: string,
  body: Buffer,
  props: Record<string, unknown>,
): Promise<void> {
  if (ch === undefined) return Promise.reject(unavailable());
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  try {
    ch.publish(exchange, routingKey, body, props, (err: unknown) => {
      if (err) reject(unavailable(err));
      else resolve();
    });
  } catch (err) {
    reject(unavailable(err));
  }
  return promise;
}

/** A task waiting in the dead-letter queue, as operators see it. */
export interface DeadLetter {
  readonly taskId: string;
  readonly taskType: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly client: { name: string; kind: string };
  readonly submittedAt: string;
  readonly error: { code: string; message: string } | null;
  readonly deadAt: string | null;
}

function toDeadLetter(
  msg: { content: Buffer; properties: { headers?: unknown } },
): {
  entry: DeadLetter;
  task: TaskMessage | null;
} {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
  let task: TaskMessage | null = null;
  try {
    const parsed = TaskMessage.safeParse(JSON.parse(msg.content.toString("utf8")));
    if (parsed.success) task = parsed.data;
  } catch {
    // unreadable message: listed with what is known
  }
  const code = headers[DEAD_HEADERS.code];
  const message = headers[DEAD_HEADERS.message];
  const at = headers[DEAD_HEADERS.at];
  return {
    task,
    entry: {
      taskId: task?.taskId ?? "(ilegible)",
      taskType: task?.type ?? "(ilegible)",
      attempt: task?.attempt ?? 0,
      maxAttempts: task?.maxAttempts ?? 0,
      client: task?.client ?? { name: "desconocido", kind: "cli" },
      submittedAt: task?.submittedAt ?? "",
      error: typeof code === "string"
        ? { code, message: typeof message === "string" ? message : "" }
        : null,
      deadAt: typeof at === "string" ? at : null,
    },
  };
}

function unavailable(cause?: unknown): ColmenaError {
  return new ColmenaError("BROKER_UNAVAILABLE", cause === undefined ? {} : { cause });
}

function safeUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, "//");
}

/** A recovering connection that runs `setup` after each connect and tracks whether it is up. */
class _Session {
  readonly #model: Awaited<ReturnType<typeof _connectRecovering>>;
  #up = false;
  #everUp = false;
  readonly #closed = Promise.withResolvers<void | Error>();
  #stopping = false;

  private constructor(model: Awaited<ReturnType<typeof _connectRecovering>>) {
    this.#model = model;
  }

  static async open(
    options: RabbitOptions,
    setup: (model: ChannelModel) => Promise<void>,
    onDown: () => void,
  ): Promise<_Session> {
    const model = await _connectRecovering(options, async (m) => {
      m.on("error", (err: Error) => log.error("Error en la conexión con RabbitMQ", err));
      await setup(m);
    });
    const session = new _Session(model);
    const s = session;
    model.on("connect", () => {
      if (s.#everUp) log.info("Reconectado a RabbitMQ");
      s.#up = true;
      s.#everUp = true;
    });
    model.on("disconnect", (err: Error) => {
      s.#up = false;
      onDown();
      if (!s.#stopping) {
        log.warn(`Conexión con RabbitMQ perdida (${err.message}); reintentando`);
      }
    });
    model.on("reconnect-scheduled", (info: { attempt: number; delay: number }) => {
      if (s.#everUp && info.attempt % 10 === 1) {
        log.warn(
          `Reintento ${info.attempt} de conexión a RabbitMQ en ${Math.round(info.delay)} ms`,
        );
      }
    });
    model.on("reconnect-failed", (err: Error) => {
      s.#up = false;
      onDown();
      log.error("No se pudo reconectar a RabbitMQ; se abandona", err);
      s.#closed.resolve(unavailable(err));
    });
    model.on(
      "blocked",
      (reason: string) => log.warn(`RabbitMQ bloquea las publicaciones: ${reason}`),
    );
    model.on("unblocked", () => log.info("RabbitMQ desbloquea las publicaciones"));
    model.on("error", (err: Error) => log.error("Error en la conexión con RabbitMQ", err));
    model.on(
      "handler-error",
      (err: Error, event: string) => log.error(`Error en un manejador de "${event}"`, err),
    );
    await model.waitForConnect().catch((cause: unknown) => {
      throw unavailable(cause);
    });
    session.#up = true;
    session.#everUp = true;
    return session;
  }

  get up(): boolean {
    return this.#up;
  }

  closed(): Promise<void | Error> {
    return this.#closed.promise;
  }

  async close(): Promise<void> {
    this.#stopping = true;
    this.#up = false;
    try {
      await this.#model.close();
    } catch (err) {
      log.error("Error al cerrar la conexión con RabbitMQ", err);
    }
    this.#closed.resolve();
  }
}

async function _connectRecovering(
  options: RabbitOptions,
  setup: (model: ChannelModel) => Promise<void>,
) {
  try {
    return await amqp.connect(options.url, {
      noDelay: true,
      recovery: {
        initialDelay: 200,
        maxDelay: 5_000,
        factor: 2,
        jitter: 0.2,
        maxRetries: Infinity,
        initialMaxRetries: options.initialRetries ?? 4,
        setup,
      },
    });
  } catch (cause) {
    throw new ColmenaError("BROKER_UNAVAILABLE", {
      message: `No se puede conectar a RabbitMQ en ${safeUrl(options.url)}`,
      cause,
    });
  }
}

/** Closes the connection a broken channel belongs to, so that recovery rebuilds everything. */
function watchChannel(
  model: ChannelModel,
  ch: Channel,
  what: string,
  stopping: () => boolean,
): void {
  ch.on("error", (err: Error) => log.error(`Error en el canal de ${what}`, err));
  ch.on(
    "handler-error",
    (err: Error, event: string) => log.error(`Error en un manejador de "${event}" (${what})`, err),
  );
  ch.on("close", () => {
    if (stopping()) return;
    log.warn(`El canal de ${what} se cerró; se reconecta`);
    model.close().catch(() => {});
  });
}

/**
 * Closes a channel and waits (at most `timeoutMs`) for the broker's close-ok. Acks sent on a channel are
 * applied before its close, whereas those still in flight when the whole connection closes can be dropped
 * (and their messages delivered again): so a process that stops closes its channels first.
 */
async function closeChannel(ch: Channel | undefined, timeoutMs = 5_000): Promise<void> {
  if (ch === undefined) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.resolve().then(() => ch.close()).catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/** Options of {@linkcode connectServerBroker}. */
export interface ServerBrokerOptions extends RabbitOptions {
  /** This server's id; names its own reply queue. */
  serverId: string;
  /** Receives result batches, from `result_queue` and from other servers. */
  onResults: ResultBatchHandler;
  /** Result messages held unacknowledged at once. @defaultValue `500` */
  prefetch?: number;
  /** Receives workers' heartbeats. */
  onHeartbeat?: (heartbeat: Heartbeat) => void;
}

/** What the server side of the adapter offers beyond {@linkcode ServerBroker}. */
export interface RabbitServerBroker extends ServerBroker {
  /** Sends a control message to every worker; resolves on the broker's confirm. */
  publishControl(message: ControlMessage): Promise<void>;
  /** The first `limit` tasks of the dead-letter queue, left in place. */
  listDeadLetters(limit: number): Promise<DeadLetter[]>;
  /**
   * Moves dead-lettered tasks back to the task queue for a fresh set of attempts: those with the given ids,
   * or the first `limit` when `taskIds` is undefined. `beforePublish` runs for each task found, before it
   * is published again (the server reopens its record there, so that the new result is not taken for a
   * duplicate); when it rejects, that task stays in the dead-letter queue. Returns the tasks moved.
   */
  requeueDeadLetters(
    taskIds: readonly string[] | undefined,
    limit: number,
    beforePublish?: (task: TaskMessage) => Promise<void>,
  ): Promise<TaskMessage[]>;
}

/** Connects a server to RabbitMQ: task publisher with confirms, result consumer, reply queue. */
export async function connectServerBroker(
  options: ServerBrokerOptions,
): Promise<RabbitServerBroker> {
  return await _RabbitServerBroker.open(options);
}

class _RabbitServerBroker implements RabbitServerBroker {
  readonly #options: ServerBrokerOptions;
  #session: _Session | undefined;
  #pub: ConfirmChannel | undefined;
  #stopping = false;
  #pendingConfirms = 0;
  #confirmsIdle: PromiseWithResolvers<void> | undefined;
  #model: ChannelModel | undefined;
  #sub: Channel | undefined;

  private constructor(options: ServerBrokerOptions) {
    this.#options = options;
  }

  static async open(options: ServerBrokerOptions): Promise<_RabbitServerBroker> {
    const broker = new _RabbitServerBroker(options);
    broker.#session = await _Session.open(
      options,
      (model) => broker.#setup(model),
      () => {
        broker.#pub = undefined;
      },
    );
    return broker;
  }

  get connected(): boolean {
    return this.#pub !== undefined && (this.#session?.up ?? false);
  }

  #connectedWaiters = new Set<() => void>();

  waitConnected(timeoutMs: number): Promise<boolean> {
    if (this.connected) return Promise.resolve(true);
    if (this.#stopping) return Promise.resolve(false);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const done = () => {
      clearTimeout(timer);
      this.#connectedWaiters.delete(done);
      resolve(true);
    };
    const timer = setTimeout(() => {
      this.#connectedWaiters.delete(done);
      resolve(false);
    }, timeoutMs);
    this.#connectedWaiters.add(done);
    return promise;
  }

  async #setup(model: ChannelModel): Promise<void> {
    const names = this.#options;
    const stopping = () => this.#stopping;
    const pub = await model.createConfirmChannel();
    watchChannel(model, pub, "publicación", stopping);
    await declareTopology(pub, names);
    const own = serverQueue(names.resultQueue, this.#options.serverId);
    await pub.assertQueue(own, { durable: true, arguments: { "x-expires": 300_000 } });
    await pub.bindQueue(own, repliesExchange(names.resultQueue), this.#options.serverId);

    const sub = await model.createChannel();
    watchChannel(model, sub, "resultados", stopping);
    this.#sub = sub;
    await sub.prefetch(this.#options.prefetch ?? 500);
    const acker = new _InOrderAcker(sub, this.#options.onResults);
    await sub.consume(names.resultQueue, (msg) => acker.receive(msg, model), { noAck: false });
    await sub.consume(own, (msg) => acker.receive(msg, model), { noAck: false });
    const onHeartbeat = this.#options.onHeartbeat;
    if (onHeartbeat !== undefined) {
      const hbQueue = await sub.assertQueue("", { exclusive: true, autoDelete: true });
      await sub.bindQueue(hbQueue.queue, heartbeatExchange(names.resultQueue), "");
      await sub.consume(hbQueue.queue, (msg) => {
        if (msg === null) return;
        try {
          const parsed = Heartbeat.safeParse(JSON.parse(msg.content.toString("utf8")));
          if (parsed.success) onHeartbeat(parsed.data);
        } catch {
          // an unreadable heartbeat is ignored
        }
      }, { noAck: true });
    }
    this.#model = model;
    this.#pub = pub;
    // Recovery calls this before it marks the connection up: wake the waiters a turn later.
    setTimeout(() => {
      for (const wake of [...this.#connectedWaiters]) wake();
    }, 0);
  }

  publishControl(message: ControlMessage): Promise<void> {
    return this.#publish(
      controlExchange(this.#options.taskQueue),
      "",
      Buffer.from(JSON.stringify(message)),
      {
        persistent: false,
        contentType: "application/json",
      },
    );
  }

  async listDeadLetters(limit: number): Promise<DeadLetter[]> {
    const model = this.#model;
    if (model === undefined || !this.connected) throw unavailable();
    const ch = await model.createChannel();
    ch.on("error", () => {});
    const entries: DeadLetter[] = [];
    try {
      for (let i = 0; i < limit; i++) {
        const msg = await ch.get(deadLetterQueue(this.#options.taskQueue), { noAck: false });
        if (msg === false) break;
        entries.push(toDeadLetter(msg).entry);
      }
    } finally {
      // Closing the channel hands every message back, in its place.
      await ch.close().catch(() => {});
    }
    return entries;
  }

  async requeueDeadLetters(
    taskIds: readonly string[] | undefined,
    limit: number,
    beforePublish?: (task: TaskMessage) => Promise<void>,
  ): Promise<TaskMessage[]> {
    const model = this.#model;
    if (model === undefined || !this.connected) throw unavailable();
    const ch = await model.createConfirmChannel();
    ch.on("error", () => {});
    const wanted = taskIds === undefined ? undefined : new Set(taskIds);
    const moved: TaskMessage[] = [];
    try {
      const scan = wanted === undefined ? limit : 100_000;
      for (let i = 0; i < scan && moved.length < limit; i++) {
        const msg = await ch.get(deadLetterQueue(this.#options.taskQueue), { noAck: false });
        if (msg === false) break;
        const { task } = toDeadLetter(msg);
        if (task === null || (wanted !== undefined && !wanted.has(task.taskId))) continue;
        const fresh: TaskMessage = { ...task, attempt: 1, deliveries: 1 };
        await beforePublish?.(fresh);
        await confirmPublish(
          ch,
          "",
          this.#options.taskQueue,
          Buffer.from(JSON.stringify(fresh)),
          taskProps(fresh),
        );
        ch.ack(msg);
        moved.push(fresh);
        if (wanted !== undefined && moved.length === wanted.size) break;
      }
    } finally {
      await ch.close().catch(() => {});
    }
    return moved;
  }

  publishTask(task: TaskMessage): Promise<void> {
    const body = Buffer.from(JSON.stringify(task));
    return this.#publish("", this.#options.taskQueue, body, taskProps(task));
  }

  forwardResults(origin: string, batch: ResultBatch): Promise<void> {
    const body = Buffer.from(JSON.stringify({ ...batch, forwarded: true }));
    return this.#publish(repliesExchange(this.#options.resultQueue), origin, body, {
      persistent: true,
      contentType: "application/json",
    });
  }

  #publish(
    exchange: string,
    routingKey: string,
    body: Buffer,
    props: { persistent: boolean; priority?: number; messageId?: string; contentType: string },
  ): Promise<void> {
    if (this.#stopping) return Promise.reject(unavailable());
    this.#pendingConfirms++;
    return confirmPublish(this.#pub, exchange, routingKey, body, props).finally(() =>
      this.#confirmDone()
    );
  }

  #confirmDone(): void {
    if (--this.#pendingConfirms === 0 && this.#confirmsIdle) {
      this.#confirmsIdle.resolve();
      this.#confirmsIdle = undefined;
    }
  }

  async drain(): Promise<void> {
    if (this.#pendingConfirms > 0) {
      this.#confirmsIdle = Promise.withResolvers<void>();
      await Promise.race([
        this.#confirmsIdle.promise,
        new Promise((r) => setTimeout(r, 5_000)),
      ]);
    }
    this.#stopping = true;
    const channels = [this.#sub, this.#pub];
    this.#pub = undefined;
    this.#sub = undefined;
    await Promise.all(channels.map((ch) => closeChannel(ch)));
    await this.#session?.close();
  }

  closed(): Promise<void | Error> {
    return this.#session?.closed() ?? Promise.resolve();
  }
}

/**
 * Runs result batches through the handler one after another and acknowledges them in delivery order,
 * several at a time (`multiple`), once the handler has finished with each.
 */
class _InOrderAcker {
  readonly #ch: Channel;
  readonly #handler: ResultBatchHandler;
  #chain: Promise<void> = Promise.resolve();
  #lastDone: ConsumeMessage | undefined;
  #scheduled = false;
  #dead = false;

  constructor(ch: Channel, handler: ResultBatchHandler) {
    this.#ch = ch;
    this.#handler = handler;
    ch.on("close", () => {
      this.#dead = true;
    });
  }

  receive(msg: ConsumeMessage | null, model: ChannelModel): void {
    if (msg === null) {
      log.warn("RabbitMQ canceló el consumo de resultados; se reconecta");
      model.close().catch(() => {});
      return;
    }
    let batch: ResultBatch | undefined;
    try {
      const parsed = ResultBatch.safeParse(JSON.parse(msg.content.toString("utf8")));
      if (parsed.success) batch = parsed.data;
    } catch {
      // handled below: unreadable
    }
    // The handler starts at once, so that batches overlap their store round trips; the acks still
    // follow delivery order, each only after its own batch and every earlier one are done.
    const work: Promise<unknown> = batch === undefined
      ? Promise.resolve("unreadable")
      : Promise.resolve().then(() => this.#handler(batch));
    work.catch(() => {}); // observed in order below
    this.#chain = this.#chain.then(async () => {
      if (this.#dead) return;
      try {
        if ((await work) === "unreadable") log.warn("Mensaje de resultados ilegible; se descarta");
        this.#done(msg);
      } catch (err) {
        // Not acknowledged, nor anything after it: the channel is closed so that they come again.
        this.#dead = true;
        log.error("No se pudo procesar un lote de resultados; se reintentará", err);
        model.close().catch(() => {});
      }
    });
  }

  #done(msg: ConsumeMessage): void {
    this.#lastDone = msg;
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      const last = this.#lastDone;
      this.#lastDone = undefined;
      if (last !== undefined && !this.#dead) this.#ch.ack(last, true);
    }, 0);
  }
}

/** Options of {@linkcode connectWorkerBroker}. */
export interface WorkerBrokerOptions extends RabbitOptions {
  /** Tasks held at once (the prefetch). */
  prefetch: number;
  /** Receives each task delivered. */
  onTask: (delivery: TaskDelivery) => void;
  /** Receives control messages from servers. */
  onControl?: (message: ControlMessage) => void;
}

/** What the worker side of the adapter offers beyond {@linkcode WorkerBroker}. */
export interface RabbitWorkerBroker extends WorkerBroker {
  /** Stops receiving new tasks; those held stay held. */
  stopConsuming(): Promise<void>;
  /** Sends a heartbeat to every server; fire and forget. */
  publishHeartbeat(heartbeat: Heartbeat): void;
}

/** Connects a worker to RabbitMQ: task consumer with manual acks, result publisher with confirms. */
export async function connectWorkerBroker(
  options: WorkerBrokerOptions,
): Promise<RabbitWorkerBroker> {
  return await _RabbitWorkerBroker.open(options);
}

class _Delivery implements TaskDelivery {
  readonly task: TaskMessage | null;
  readonly redelivered: boolean;
  readonly msg: ConsumeMessage;
  readonly ch: ConfirmChannel;

  constructor(task: TaskMessage | null, msg: ConsumeMessage, ch: ConfirmChannel) {
    this.task = task;
    this.redelivered = msg.fields.redelivered;
    this.msg = msg;
    this.ch = ch;
  }
}

class _RabbitWorkerBroker implements RabbitWorkerBroker {
  readonly #options: WorkerBrokerOptions;
  #session: _Session | undefined;
  #ch: ConfirmChannel | undefined;
  #consumerTag: string | undefined;
  #consuming = true;
  #stopping = false;
  readonly #deadChannels = new WeakSet<ConfirmChannel>();
  readonly #retryQueues = new Set<string>();

  private constructor(options: WorkerBrokerOptions) {
    this.#options = options;
  }

  static async open(options: WorkerBrokerOptions): Promise<_RabbitWorkerBroker> {
    const broker = new _RabbitWorkerBroker(options);
    broker.#session = await _Session.open(
      options,
      (model) => broker.#setup(model),
      () => {
        broker.#ch = undefined;
      },
    );
    return broker;
  }

  async #setup(model: ChannelModel): Promise<void> {
    const ch = await model.createConfirmChannel();
    watchChannel(model, ch, "tareas", () => this.#stopping);
    ch.on("close", () => this.#deadChannels.add(ch));
    await declareTopology(ch, this.#options);
    await ch.prefetch(this.#options.prefetch);
    this.#ch = ch;
    this.#retryQueues.clear();
    const onControl = this.#options.onControl;
    if (onControl !== undefined) {
      const own = await ch.assertQueue("", { exclusive: true, autoDelete: true });
      await ch.bindQueue(own.queue, controlExchange(this.#options.taskQueue), "");
      await ch.consume(own.queue, (msg) => {
        if (msg === null) return;
        try {
          const parsed = ControlMessage.safeParse(JSON.parse(msg.content.toString("utf8")));
          if (parsed.success) onControl(parsed.data);
        } catch {
          // an unreadable control message is ignored
        }
      }, { noAck: true });
    }
    if (!this.#consuming) return;
    const reply = await ch.consume(this.#options.taskQueue, (msg) => {
      if (msg === null) {
        log.warn("RabbitMQ canceló el consumo de tareas; se reconecta");
        model.close().catch(() => {});
        return;
      }
      let task: TaskMessage | null = null;
      try {
        const parsed = TaskMessage.safeParse(JSON.parse(msg.content.toString("utf8")));
        if (parsed.success) task = parsed.data;
      } catch {
        // unreadable: task stays null
      }
      this.#options.onTask(new _Delivery(task, msg, ch));
    }, { noAck: false });
    this.#consumerTag = reply.consumerTag;
  }

  async stopConsuming(): Promise<void> {
    this.#consuming = false;
    const ch = this.#ch;
    const tag = this.#consumerTag;
    this.#consumerTag = undefined;
    if (ch !== undefined && tag !== undefined) {
      await ch.cancel(tag).catch(() => {});
    }
  }

  async publishReports(batch: ReportBatch, deliveries: readonly TaskDelivery[]): Promise<void> {
    const body = Buffer.from(JSON.stringify({ v: QUEUE_FORMAT, ...batch }));
    await confirmPublish(this.#ch, "", this.#options.resultQueue, body, {
      persistent: true,
      contentType: "application/json",
    });
    for (const d of deliveries) this.#settle(d, "ack");
  }

  async publishTaskCopy(task: TaskMessage, delayMs: number): Promise<void> {
    const ch = this.#ch;
    let queue = this.#options.taskQueue;
    if (delayMs > 0) {
      const delay = Math.min(Math.round(delayMs), MAX_RETRY_DELAY_MS);
      queue = retryQueue(this.#options.taskQueue, delay);
      if (ch !== undefined && !this.#retryQueues.has(queue)) {
        try {
          await ch.assertQueue(queue, {
            durable: true,
            arguments: {
              "x-message-ttl": delay,
              "x-dead-letter-exchange": "",
              "x-dead-letter-routing-key": this.#options.taskQueue,
            },
          });
        } catch (err) {
          throw unavailable(err);
        }
        this.#retryQueues.add(queue);
      }
    }
    await confirmPublish(ch, "", queue, Buffer.from(JSON.stringify(task)), taskProps(task));
  }

  async publishDeadLetter(task: TaskMessage, error: WireError): Promise<void> {
    await confirmPublish(
      this.#ch,
      "",
      deadLetterQueue(this.#options.taskQueue),
      Buffer.from(JSON.stringify(task)),
      {
        ...taskProps(task),
        headers: {
          [DEAD_HEADERS.code]: error.code,
          [DEAD_HEADERS.message]: error.message,
          [DEAD_HEADERS.at]: new Date().toISOString(),
        },
      },
    );
  }

  publishHeartbeat(heartbeat: Heartbeat): void {
    const ch = this.#ch;
    if (ch === undefined) return;
    try {
      ch.publish(
        heartbeatExchange(this.#options.resultQueue),
        "",
        Buffer.from(JSON.stringify(heartbeat)),
        { persistent: false, contentType: "application/json", expiration: "15000" },
      );
    } catch {
      // the next heartbeat will do
    }
  }

  ack(delivery: TaskDelivery): void {
    this.#settle(delivery, "ack");
  }

  release(delivery: TaskDelivery): void {
    this.#settle(delivery, "requeue");
  }

  discard(delivery: TaskDelivery): void {
    this.#settle(delivery, "dead-letter");
  }

  /** Settles a delivery on the channel it came from; after a reconnect the broker redelivers it instead. */
  #settle(delivery: TaskDelivery, how: "ack" | "requeue" | "dead-letter"): void {
    if (!(delivery instanceof _Delivery)) {
      throw new TypeError("Cannot settle a delivery from elsewhere");
    }
    if (this.#deadChannels.has(delivery.ch)) return;
    try {
      if (how === "ack") delivery.ch.ack(delivery.msg);
      else delivery.ch.nack(delivery.msg, false, how === "requeue");
    } catch (err) {
      log.error("No se pudo confirmar una tarea a RabbitMQ; se volverá a entregar", err);
    }
  }

  async drain(): Promise<void> {
    await this.stopConsuming();
    this.#stopping = true;
    const ch = this.#ch;
    this.#ch = undefined;
    await closeChannel(ch);
    await this.#session?.close();
  }

  closed(): Promise<void | Error> {
    return this.#session?.closed() ?? Promise.resolve();
  }
}

/**
 * Deletes a topology's queues and exchanges (replies, control, heartbeats), whatever they hold: for tests and
 * for operators retiring a deployment. Per-server reply queues expire on their own; retry queues
 * (`<task_queue>.retry.<ms>`, one per delay used) are left to the caller.
 */
export async function deleteTopology(url: string, names: QueueNames): Promise<void> {
  const conn = await amqp.connect(url, { noDelay: true });
  try {
    conn.on("error", () => {});
    const ch = await conn.createChannel();
    await ch.deleteQueue(names.taskQueue);
    await ch.deleteQueue(deadLetterQueue(names.taskQueue));
    await ch.deleteQueue(names.resultQueue);
    await ch.deleteExchange(repliesExchange(names.resultQueue));
    await ch.deleteExchange(controlExchange(names.taskQueue));
    await ch.deleteExchange(heartbeatExchange(names.resultQueue));
  } finally {
    await conn.close().catch(() => {});
  }
}

/** How many messages wait in a queue right now, or `undefined` when it does not exist. */
export async function queueDepth(url: string, queue: string): Promise<number | undefined> {
  const conn = await amqp.connect(url, { noDelay: true });
  try {
    conn.on("error", () => {});
    const ch = await conn.createChannel();
    ch.on("error", () => {});
    try {
      return (await ch.checkQueue(queue)).messageCount;
    } catch {
      return undefined;
    }
  } finally {
    await conn.close().catch(() => {});
  }
}
