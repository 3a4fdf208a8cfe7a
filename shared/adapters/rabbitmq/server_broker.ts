/**
 * The server side of the RabbitMQ adapter: publishes tasks to the queue of their type with confirms (those
 * of one type and priority published in the same turn packed into batch messages, see `task_batcher.ts`),
 * consumes result batches (from the result queue and the server's own reply queue), forwards results to other
 * servers, sends cancellations, receives heartbeats, and reads and requeues the dead-letter queue.
 *
 * @module
 */
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from "amqplib";
import { Buffer } from "node:buffer";
import type {
  DeadLetter,
  HeartbeatHandler,
  QueueDepth,
  ResultBatchHandler,
  ServerBroker,
} from "../../ports.ts";
import {
  type ControlMessage,
  Heartbeat,
  type ResultBatch,
  type TaskMessage,
} from "../../queue_messages.ts";
import { listDeadLetters, requeueDeadLetters } from "./dead_letters.ts";
import { InOrderAcker } from "./in_order_acker.ts";
import { QueueDepthReader } from "./queue_depths.ts";
import { DEFAULT_RESULT_BYTES_IN_FLIGHT, IntakeBudget, ResultIntake } from "./result_intake.ts";
import {
  controlExchange,
  heartbeatExchange,
  type QueueNames,
  repliesExchange,
  serverQueue,
} from "./names.ts";
import {
  closeChannel,
  confirmPublish,
  type Outgoing,
  type RabbitOptions,
  Session,
  unavailable,
  watchChannel,
} from "./session.ts";
import { RejectLog, signed, type SignedKind, verified } from "./signing.ts";
import { type BatchedTask, TaskBatcher } from "./task_batcher.ts";
import { tasksToTheirQueue } from "./task_route.ts";
import { declareResultQueue, declareTopology, declareTypeQueues } from "./topology.ts";

/** Options of {@linkcode connectServerBroker}. */
export interface ServerBrokerOptions extends RabbitOptions, QueueNames {
  /** This server's id; names its own reply queue. */
  serverId: string;
  /**
   * The task types this server accepts. Their queues are declared at every (re)connect, so a task of a type
   * no worker runs yet waits in its queue until such a worker starts. A task of another type has its queue
   * declared before it is published.
   */
  taskTypes: readonly string[];
  /** Receives result batches, from `result_queue` and from other servers. */
  onResults: ResultBatchHandler;
  /**
   * Most result messages held unacknowledged at once per consumer, however small; the byte budget
   * (`maxResultBytesInFlight`) lowers it for large ones. @defaultValue `500`
   */
  prefetch?: number;
  /**
   * Bytes of result messages held at once (received, not yet recorded and handed to the connections): past
   * it the server stops taking result messages until half of it has drained.
   * @defaultValue `DEFAULT_RESULT_BYTES_IN_FLIGHT` (64 MiB)
   */
  maxResultBytesInFlight?: number;
  /** Receives workers' heartbeats. */
  onHeartbeat?: HeartbeatHandler;
  /**
   * Most tasks of one type and priority packed into one message when published in the same event-loop turn;
   * 1 publishes one message per task. @defaultValue `32`
   */
  tasksPerMessage?: number;
  /**
   * A further cap on the tasks of one message of `type` (the server passes the fairness rule of its worker
   * registry). @defaultValue no further cap
   */
  batchLimit?: (type: string) => number;
  /**
   * The cap on the tasks of one bulk message of `type` (a `submit_many`'s tasks; the server passes 1 while
   * a worker of the type cannot read batches). @defaultValue `MAX_BULK_TASKS`
   */
  bulkLimit?: (type: string) => number;
}

/** Default of {@linkcode ServerBrokerOptions.tasksPerMessage}. */
export const DEFAULT_TASKS_PER_MESSAGE = 32;

/** Connects a server to RabbitMQ: task publisher with confirms, result consumer, reply queue. */
export async function connectServerBroker(options: ServerBrokerOptions): Promise<ServerBroker> {
  return await _RabbitServerBroker.open(options);
}

class _RabbitServerBroker implements ServerBroker {
  readonly #options: ServerBrokerOptions;
  #session: Session | undefined;
  #consumerSession: Session | undefined;
  #pub: ConfirmChannel | undefined;
  #stopping = false;
  #pendingConfirms = 0;
  #confirmsIdle: PromiseWithResolvers<void> | undefined;
  #model: ChannelModel | undefined;
  #sub: Channel | undefined;
  #intake: ResultIntake | undefined;
  readonly #connectedWaiters = new Set<() => void>();
  /** Types whose queue this connection has declared. */
  #declaredTypes = new Set<string>();
  readonly #depths = new QueueDepthReader();
  readonly #rejects = new RejectLog();
  readonly #batcher: TaskBatcher;

  private constructor(options: ServerBrokerOptions) {
    this.#options = options;
    this.#batcher = new TaskBatcher({
      maxTasks: options.tasksPerMessage ?? DEFAULT_TASKS_PER_MESSAGE,
      ...(options.batchLimit === undefined ? {} : { limitFor: options.batchLimit }),
      ...(options.bulkLimit === undefined ? {} : { bulkLimitFor: options.bulkLimit }),
      publish: (tasks, bulk) => this.#publishTasks(tasks, bulk),
    });
  }

  /**
   * Two connections: one publishes (tasks, cancels, forwards) and one consumes (results, heartbeats). A
   * broker under a resource alarm blocks only connections that publish, so results keep coming in and
   * being recorded and pushed while new tasks are refused with `BROKER_BLOCKED`.
   */
  static async open(options: ServerBrokerOptions): Promise<_RabbitServerBroker> {
    const broker = new _RabbitServerBroker(options);
    broker.#session = await Session.open(options, {
      setup: (model) => broker.#setupPublisher(model),
      onDown: () => {
        broker.#pub = undefined;
      },
    });
    try {
      broker.#consumerSession = await Session.open(options, {
        label: "de consumo",
        setup: (model) => broker.#setupConsumer(model),
        onDown: () => {
          broker.#sub = undefined;
        },
      });
    } catch (err) {
      await broker.#session.close();
      throw err;
    }
    return broker;
  }

  get connected(): boolean {
    return this.#pub !== undefined && (this.#session?.up ?? false);
  }

  get blocked(): boolean {
    return this.#session?.blocked ?? false;
  }

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

  /** The publishing connection: declares the topology, then publishes on a confirm channel. */
  async #setupPublisher(model: ChannelModel): Promise<void> {
    const names = this.#options;
    const stopping = () => this.#stopping;
    const pub = await model.createConfirmChannel();
    watchChannel(model, pub, { what: "publicación", stopping });
    await declareTopology(pub, names);
    await declareTypeQueues(pub, {
      taskQueue: names.taskQueue,
      types: names.taskTypes,
      queueType: names.queueType,
    });
    this.#declaredTypes = new Set(names.taskTypes);
    await this.#declareOwnQueue(pub);
    this.#model = model;
    this.#pub = pub;
    // Recovery calls this before it marks the connection up: wake the waiters a turn later.
    setTimeout(() => {
      for (const wake of [...this.#connectedWaiters]) wake();
    }, 0);
  }

  /** This server's reply queue, bound to the replies exchange by its id; idempotent. */
  async #declareOwnQueue(ch: Channel): Promise<string> {
    const names = this.#options;
    const own = serverQueue(names.resultQueue, names.serverId);
    await ch.assertExchange(repliesExchange(names.resultQueue), "direct", { durable: true });
    await ch.assertQueue(own, { durable: true, arguments: { "x-expires": 300_000 } });
    await ch.bindQueue(own, repliesExchange(names.resultQueue), names.serverId);
    return own;
  }

  /** The consuming connection: results (shared and forwarded to this server) and heartbeats. */
  async #setupConsumer(model: ChannelModel): Promise<void> {
    const names = this.#options;
    const stopping = () => this.#stopping;
    const sub = await model.createChannel();
    watchChannel(model, sub, { what: "resultados", stopping });
    this.#sub = sub;
    // Declared here too: after a broker restart this connection may come back before the other one.
    await declareResultQueue(sub, names);
    const own = await this.#declareOwnQueue(sub);
    const signer = this.#options.signer;
    const budget = new IntakeBudget({
      maxBytes: this.#options.maxResultBytesInFlight ?? DEFAULT_RESULT_BYTES_IN_FLIGHT,
      maxPrefetch: this.#options.prefetch ?? 500,
      consumers: 2,
    });
    const acker = new InOrderAcker(sub, this.#options.onResults, {
      accept: (msg) => verified(signer, "results", msg),
      onReject: (queue) => this.#rejects.note(queue, "se descarta"),
      onSettled: (msg) => intake.settled(msg),
    });
    const onMessage = (queue: string) => (msg: ConsumeMessage | null) => {
      if (msg !== null) intake.received(msg);
      acker.receive(msg, model, queue);
    };
    // The handlers below run only once `start()` has consumed, after `intake` is set.
    const intake: ResultIntake = new ResultIntake(sub, budget, [
      { queue: names.resultQueue, onMessage: onMessage(names.resultQueue) },
      { queue: own, onMessage: onMessage(own) },
    ]);
    this.#intake = intake;
    await intake.start();
    const onHeartbeat = this.#options.onHeartbeat;
    if (onHeartbeat !== undefined) {
      const hbQueue = await sub.assertQueue("", { exclusive: true, autoDelete: true });
      await sub.bindQueue(hbQueue.queue, heartbeatExchange(names.resultQueue), "");
      await sub.consume(hbQueue.queue, (msg) => {
        if (msg === null) return;
        if (!verified(signer, "heartbeat", msg)) {
          this.#rejects.note(heartbeatExchange(names.resultQueue), "se descarta");
          return;
        }
        try {
          const parsed = Heartbeat.safeParse(JSON.parse(msg.content.toString("utf8")));
          if (parsed.success) onHeartbeat(parsed.data);
        } catch {
          // an unreadable heartbeat is ignored
        }
      }, { noAck: true });
    }
  }

  publishControl(message: ControlMessage): Promise<void> {
    return this.#publish("control", {
      exchange: controlExchange(this.#options.taskQueue),
      routingKey: "",
      body: Buffer.from(JSON.stringify(message)),
      // The cancel stream keeps it; workers reading it later date it by `timestamp` (seconds).
      props: {
        persistent: true,
        contentType: "application/json",
        timestamp: Math.floor(Date.now() / 1000),
      },
    });
  }

  listDeadLetters(limit: number): Promise<DeadLetter[]> {
    const model = this.#model;
    if (model === undefined || !this.connected) return Promise.reject(unavailable());
    return listDeadLetters(model, {
      taskQueue: this.#options.taskQueue,
      limit,
      signer: this.#options.signer,
    });
  }

  requeueDeadLetters(
    taskIds: readonly string[] | undefined,
    limit: number,
    beforePublish?: (task: TaskMessage) => Promise<void>,
  ): Promise<TaskMessage[]> {
    const model = this.#model;
    if (model === undefined || !this.connected) return Promise.reject(unavailable());
    return requeueDeadLetters(model, {
      taskQueue: this.#options.taskQueue,
      queueType: this.#options.queueType,
      taskIds,
      limit,
      beforePublish,
      signer: this.#options.signer,
    });
  }

  queueDepths(): Promise<QueueDepth[]> {
    const model = this.#model;
    if (model === undefined || !this.connected) return Promise.reject(unavailable());
    return this.#depths.read(model, {
      taskQueue: this.#options.taskQueue,
      resultQueue: this.#options.resultQueue,
      taskTypes: [...this.#declaredTypes],
    }).catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  get reconnects(): number {
    return this.#session?.reconnects ?? 0;
  }

  /**
   * Publishes a task with the others of its type and priority published in this turn (see
   * {@linkcode TaskBatcher}); resolves or rejects with the confirm of the message that carried it.
   */
  publishTask(task: TaskMessage, options: { bulk?: boolean } = {}): Promise<void> {
    if (this.#stopping) return Promise.reject(unavailable());
    this.#pendingConfirms++;
    return this.#batcher.add(task, options).finally(() => this.#confirmDone());
  }

  publishTasks(
    tasks: readonly TaskMessage[],
    options: { bulk?: boolean; settled: (index: number, error?: unknown) => void },
  ): void {
    if (this.#stopping) {
      const err = unavailable();
      for (let i = 0; i < tasks.length; i++) options.settled(i, err);
      return;
    }
    if (tasks.length === 0) return;
    // One pending confirm for the call, done once its last task is settled.
    this.#pendingConfirms++;
    let left = tasks.length;
    this.#batcher.addMany(tasks, {
      ...(options.bulk === undefined ? {} : { bulk: options.bulk }),
      settled: (index, error) => {
        options.settled(index, error);
        if (--left === 0) this.#confirmDone();
      },
    });
  }

  /** Publishes tasks of one type and priority as one message (a plain task message for one). */
  async #publishTasks(tasks: readonly BatchedTask[], bulk: boolean): Promise<void> {
    const type = tasks[0]?.task.type;
    const pub = this.#pub;
    if (type !== undefined && pub !== undefined && !this.#declaredTypes.has(type)) {
      // A message sent to a queue that does not exist is dropped: declare it first.
      try {
        await declareTypeQueues(pub, {
          taskQueue: this.#options.taskQueue,
          types: [type],
          queueType: this.#options.queueType,
        });
      } catch (err) {
        throw unavailable(err);
      }
      this.#declaredTypes.add(type);
    }
    return await this.#publish(
      "task",
      tasksToTheirQueue(this.#options.taskQueue, tasks, { bulk }),
    );
  }

  forwardResults(origin: string, batch: ResultBatch): Promise<void> {
    return this.#publish("results", {
      exchange: repliesExchange(this.#options.resultQueue),
      routingKey: origin,
      body: Buffer.from(JSON.stringify({ ...batch, forwarded: true })),
      props: { persistent: true, contentType: "application/json" },
    });
  }

  #publish(kind: SignedKind, message: Outgoing): Promise<void> {
    if (this.#stopping) return Promise.reject(unavailable());
    this.#pendingConfirms++;
    return confirmPublish(this.#pub, signed(this.#options.signer, kind, message)).finally(() =>
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
    this.#intake?.stop();
    const channels = [this.#sub, this.#pub];
    this.#pub = undefined;
    this.#sub = undefined;
    await Promise.all(channels.map((ch) => closeChannel(ch)));
    await Promise.all([this.#consumerSession?.close(), this.#session?.close()]);
  }

  closed(): Promise<void | Error> {
    return Promise.race([
      this.#session?.closed() ?? Promise.resolve(),
      this.#consumerSession?.closed() ?? new Promise<never>(() => {}),
    ]);
  }
}
