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
 *
 * @module
 */
import amqp from "amqplib";
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from "amqplib";
import { Buffer } from "node:buffer";
import { ColmenaError } from "../errors.ts";
import * as log from "../log.ts";
import type { ResultBatchHandler, ServerBroker, TaskDelivery, WorkerBroker } from "../ports.ts";
import {
  QUEUE_FORMAT,
  ResultBatch,
  type ResultMessage,
  type StartedNotice,
  TaskMessage,
} from "../queue_messages.ts";

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

/** Options of {@linkcode connectServerBroker}. */
export interface ServerBrokerOptions extends RabbitOptions {
  /** This server's id; names its own reply queue. */
  serverId: string;
  /** Receives result batches, from `result_queue` and from other servers. */
  onResults: ResultBatchHandler;
  /** Result messages held unacknowledged at once. @defaultValue `500` */
  prefetch?: number;
}

/** Connects a server to RabbitMQ: task publisher with confirms, result consumer, reply queue. */
export async function connectServerBroker(options: ServerBrokerOptions): Promise<ServerBroker> {
  return await _RabbitServerBroker.open(options);
}

class _RabbitServerBroker implements ServerBroker {
  readonly #options: ServerBrokerOptions;
  #session: _Session | undefined;
  #pub: ConfirmChannel | undefined;
  #stopping = false;
  #pendingConfirms = 0;
  #confirmsIdle: PromiseWithResolvers<void> | undefined;

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
    await sub.prefetch(this.#options.prefetch ?? 500);
    const acker = new _InOrderAcker(sub, this.#options.onResults);
    await sub.consume(names.resultQueue, (msg) => acker.receive(msg, model), { noAck: false });
    await sub.consume(own, (msg) => acker.receive(msg, model), { noAck: false });
    this.#pub = pub;
  }

  publishTask(task: TaskMessage): Promise<void> {
    const body = Buffer.from(JSON.stringify(task));
    return this.#publish("", this.#options.taskQueue, body, {
      persistent: true,
      priority: task.priority,
      messageId: task.taskId,
      contentType: "application/json",
    });
  }

  forwardResults(origin: string, batch: ResultBatch): Promise<void> {
    const body = Buffer.from(JSON.stringify(batch));
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
    const ch = this.#pub;
    if (ch === undefined || this.#stopping) return Promise.reject(unavailable());
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#pendingConfirms++;
    try {
      ch.publish(exchange, routingKey, body, props, (err: unknown) => {
        this.#confirmDone();
        if (err) reject(unavailable(err));
        else resolve();
      });
    } catch (err) {
      this.#confirmDone();
      reject(unavailable(err));
    }
    return promise;
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
    this.#pub = undefined;
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
    const b = batch;
    this.#chain = this.#chain.then(async () => {
      if (b === undefined) {
        log.warn("Mensaje de resultados ilegible; se descarta");
        this.#done(msg);
        return;
      }
      try {
        await this.#handler(b);
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
}

/** What the worker side of the adapter offers beyond {@linkcode WorkerBroker}. */
export interface RabbitWorkerBroker extends WorkerBroker {
  /** Stops receiving new tasks; those held stay held. */
  stopConsuming(): Promise<void>;
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

  publishResults(
    started: readonly StartedNotice[],
    results: readonly ResultMessage[],
    deliveries: readonly TaskDelivery[],
  ): Promise<void> {
    const ch = this.#ch;
    if (ch === undefined) return Promise.reject(unavailable());
    const batch = { v: QUEUE_FORMAT, started, results };
    const body = Buffer.from(JSON.stringify(batch));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    try {
      ch.publish("", this.#options.resultQueue, body, {
        persistent: true,
        contentType: "application/json",
      }, (err: unknown) => {
        if (err) {
          reject(unavailable(err));
          return;
        }
        for (const d of deliveries) this.#settle(d, "ack");
        resolve();
      });
    } catch (err) {
      reject(unavailable(err));
    }
    return promise;
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
    this.#ch = undefined;
    await this.#session?.close();
  }

  closed(): Promise<void | Error> {
    return this.#session?.closed() ?? Promise.resolve();
  }
}

/**
 * Deletes a topology's queues and exchange, whatever they hold: for tests and for operators retiring a
 * deployment. Per-server reply queues expire on their own.
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
