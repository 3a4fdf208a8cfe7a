/**
 * The worker side of the RabbitMQ adapter: consumes the queues of the task types the worker runs on one
 * channel, with manual acks and a channel-wide prefetch; publishes reports, task copies (retries, counted
 * redeliveries) and dead letters with confirms; receives cancellations; sends heartbeats.
 *
 * A batch message (several tasks in one message, see `TaskBatchMessage`) becomes one delivery per task, all
 * sharing the AMQP message, which is acknowledged once every one of them is settled. The worker hands at most
 * `prefetch` deliveries to `onTask` at once (the others wait here, unacknowledged), and while it holds batches
 * it lowers the channel's prefetch so that the broker sends a new message only while it holds fewer tasks
 * than that.
 *
 * Cancellations come from the cancel stream (`T.control.cancels`), which keeps them for a day: on every
 * (re)connect the worker reads it from the start (or from where it stopped), writes a mark of its own into
 * it, and consumes no task queue before it has read that mark back, so it knows of every cancel sent before
 * it connected; later cancels keep arriving through the same consumer.
 *
 * @module
 */
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from "amqplib";
import { Buffer } from "node:buffer";
import type { WireError } from "../../errors.ts";
import * as log from "../../log.ts";
import type { ReportBatch, TaskDelivery, WorkerBroker } from "../../ports.ts";
import {
  BULK_HEADER,
  ControlMessage,
  type Heartbeat,
  QUEUE_FORMAT,
  type TaskMessage,
} from "../../queue_messages.ts";
import { AckWindow } from "./ack_window.ts";
import { deadLetterTo } from "./dead_letters.ts";
import {
  cancelStream,
  heartbeatExchange,
  MAX_RETRY_DELAY_MS,
  type QueueNames,
  retryQueue,
  typeQueue,
} from "./names.ts";
import {
  closeChannel,
  confirmPublish,
  type RabbitOptions,
  Session,
  unavailable,
  watchChannel,
} from "./session.ts";
import { RejectLog, signed, verified } from "./signing.ts";
import { readTasks, taskJson, tasksToTheirQueue, taskTo } from "./task_route.ts";
import { declareRetryQueue, declareTopology, declareTypeQueues } from "./topology.ts";

/** Options of {@linkcode connectWorkerBroker}. */
export interface WorkerBrokerOptions extends RabbitOptions, QueueNames {
  /**
   * The task types this worker runs, at least one: it consumes the queue of each, and never receives a task
   * of another type.
   */
  taskTypes: readonly string[];
  /**
   * Tasks handed to `onTask` and not yet settled at once, across every type's queue: the worker's
   * concurrency. It is also the channel-wide prefetch while every message holds one task; while batches
   * are held the prefetch is lowered, and the tasks of a batch beyond it wait, unacknowledged.
   */
  prefetch: number;
  /**
   * Receives each task delivered; never before {@linkcode connectWorkerBroker} has resolved and the caller's
   * continuation has run, so the caller can wire the broker to whatever settles deliveries first.
   */
  onTask: (delivery: TaskDelivery) => void;
  /**
   * Receives the cancellations servers sent, the last day's included (`publishedAt`, in epoch ms, says
   * when): all those sent before this connection are delivered before any task.
   */
  onControl?: (message: ControlMessage, publishedAt: number) => void;
}

/** What the worker side of the adapter offers beyond {@linkcode WorkerBroker}. */
export interface RabbitWorkerBroker extends WorkerBroker {
  /** The task types this worker consumes, as given in {@linkcode WorkerBrokerOptions.taskTypes}. */
  readonly taskTypes: readonly string[];
  /** Stops receiving new tasks; those held stay held. */
  stopConsuming(): Promise<void>;
  /** Sends a heartbeat to every server; fire and forget. */
  publishHeartbeat(heartbeat: Heartbeat): void;
}

/** Connects a worker to RabbitMQ: task consumers with manual acks, result publisher with confirms. */
export async function connectWorkerBroker(
  options: WorkerBrokerOptions,
): Promise<RabbitWorkerBroker> {
  if (options.taskTypes.length === 0) {
    throw new RangeError("Cannot consume tasks: no task type given");
  }
  return await _RabbitWorkerBroker.open(options);
}

/**
 * The prefetch a task channel starts with, until its first deliveries are in: small, so that a worker that
 * connects to a queue of batch messages does not take `concurrency` of them at once.
 */
const STARTUP_PREFETCH = 4;

/** Cancel-stream messages in flight to the worker at once. */
const CANCEL_PREFETCH = 1_000;

/** Longest wait to read the cancel stream up to the worker's mark before consuming tasks. */
const CANCEL_SYNC_MS = 30_000;

function _readControl(msg: ConsumeMessage): ControlMessage | undefined {
  try {
    const parsed = ControlMessage.safeParse(JSON.parse(msg.content.toString("utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // an unreadable control message is ignored
  }
}

/** One message held from a task queue: one task, or the tasks of a batch. */
class _Held {
  readonly msg: ConsumeMessage;
  readonly deliveries: _Delivery[] = [];
  /** Deliveries not settled yet. */
  unsettled = 0;
  /** Deliveries handed back unrun (shutdown). */
  readonly released: _Delivery[] = [];

  constructor(msg: ConsumeMessage) {
    this.msg = msg;
  }
}

/** What became of a delivery: waiting here, handed to `onTask`, or settled one way or another. */
type _State = "waiting" | "running" | "acked" | "released" | "discarded";

class _Delivery implements TaskDelivery {
  readonly task: TaskMessage | null;
  readonly redelivered: boolean;
  readonly held: _Held;
  readonly ch: ConfirmChannel;
  state: _State = "waiting";

  constructor(task: TaskMessage | null, held: _Held, ch: ConfirmChannel) {
    this.task = task;
    this.redelivered = held.msg.fields.redelivered;
    this.held = held;
    this.ch = ch;
  }
}

function _own(delivery: TaskDelivery): _Delivery {
  if (!(delivery instanceof _Delivery)) {
    throw new TypeError("Cannot settle a delivery from elsewhere");
  }
  return delivery;
}

/** The task flow of one channel: its acks, the deliveries waiting to run, and its prefetch. */
class _Flow {
  readonly window: AckWindow;
  /** Deliveries received and not yet handed to `onTask`, oldest first, from `head` on. */
  waiting: _Delivery[] = [];
  head = 0;
  /** Deliveries handed to `onTask` and not settled. */
  running = 0;
  /** Messages held with at least one task not settled, and those tasks. */
  heldMessages = 0;
  heldTasks = 0;
  /** The prefetch last asked of the broker. */
  prefetch: number;
  prefetchScheduled = false;
  pumpScheduled = false;
  closed = false;

  constructor(window: AckWindow, prefetch: number) {
    this.window = window;
    this.prefetch = prefetch;
  }
}

class _RabbitWorkerBroker implements RabbitWorkerBroker {
  readonly #options: WorkerBrokerOptions;
  readonly taskTypes: readonly string[];
  #session: Session | undefined;
  #ch: ConfirmChannel | undefined;
  #consumerTags: string[] = [];
  #queues: string[] = [];
  #current: { ch: ConfirmChannel; model: ChannelModel } | undefined;
  #startTimer: ReturnType<typeof setTimeout> | undefined;
  #consuming = true;
  #stopping = false;
  readonly #deadChannels = new WeakSet<ConfirmChannel>();
  /**
   * The task flow of each channel; its acks are sent once per event-loop turn with `multiple` where they
   * may be.
   */
  readonly #flows = new WeakMap<ConfirmChannel, _Flow>();
  /** Copies of released tasks of partly run batches, being published before their message is acked. */
  readonly #handingBack = new Set<Promise<void>>();
  readonly #retryQueues = new Set<string>();
  /** Whether `open` has returned: before, the first connection declares its queues but consumes none. */
  #opened = false;
  /** The next offset of the cancel stream to read, once one was read. */
  #cancelOffset: number | undefined;
  readonly #rejects = new RejectLog();

  private constructor(options: WorkerBrokerOptions) {
    this.#options = options;
    this.taskTypes = [...new Set(options.taskTypes)];
  }

  static async open(options: WorkerBrokerOptions): Promise<_RabbitWorkerBroker> {
    const broker = new _RabbitWorkerBroker(options);
    broker.#session = await Session.open(options, {
      setup: (model) => broker.#setup(model),
      onDown: () => {
        broker.#ch = undefined;
        broker.#current = undefined;
      },
    });
    // Consumption starts a macrotask after the caller has the broker; later connections consume at once.
    broker.#startTimer = setTimeout(() => {
      broker.#startTimer = undefined;
      broker.#opened = true;
      const { ch, model } = broker.#current ?? {};
      if (ch === undefined || model === undefined || broker.#stopping) return;
      broker.#consume(ch, model).catch((err) => {
        log.error("No se pudo empezar a consumir tareas; se reconecta", err);
        model.close().catch(() => {});
      });
    }, 0);
    return broker;
  }

  async #setup(model: ChannelModel): Promise<void> {
    const ch = await model.createConfirmChannel();
    watchChannel(model, ch, { what: "tareas", stopping: () => this.#stopping });
    const flow = new _Flow(new AckWindow(ch), this.#options.prefetch);
    this.#flows.set(ch, flow);
    ch.on("close", () => {
      this.#deadChannels.add(ch);
      flow.closed = true;
      flow.waiting = [];
      flow.head = 0;
      flow.window.close();
    });
    await declareTopology(ch, this.#options);
    const queues = await declareTypeQueues(ch, {
      taskQueue: this.#options.taskQueue,
      types: this.taskTypes,
      queueType: this.#options.queueType,
    });
    if (this.#options.queueType === "quorum") {
      // Quorum queues refuse a channel-wide prefetch: each type's consumer gets its share of the concurrency.
      // A per-consumer prefetch holds for consumers started after it, so it cannot follow the batches held:
      // the deliveries beyond the concurrency wait here (see #pump).
      await ch.prefetch(Math.max(1, Math.ceil(this.#options.prefetch / queues.length)), false);
      flow.prefetch = 0;
    } else {
      // `global`: one limit shared by every consumer of the channel, so the tasks held stay within the
      // concurrency however many types the worker runs. It starts small: a worker that joins a queue full
      // of batches takes a few messages, not `concurrency` of them (up to concurrency × batch size tasks,
      // which other workers could run); the first turn with deliveries sets it to what they leave room for.
      const first = Math.min(this.#options.prefetch, STARTUP_PREFETCH);
      await ch.prefetch(first, true);
      flow.prefetch = first;
    }
    this.#ch = ch;
    this.#retryQueues.clear();
    this.#consumerTags = [];
    const onControl = this.#options.onControl;
    if (onControl !== undefined) await this.#followCancels(model, ch, onControl);
    this.#queues = queues;
    this.#current = { ch, model };
    if (this.#opened) await this.#consume(ch, model);
  }

  /**
   * Consumes the cancel stream from where this worker stopped reading it (the start, the first time), and
   * resolves once it has read back a mark it wrote after subscribing: every cancel sent before is then known.
   */
  async #followCancels(
    model: ChannelModel,
    confirm: ConfirmChannel,
    onControl: (message: ControlMessage, publishedAt: number) => void,
  ): Promise<void> {
    const stream = cancelStream(this.#options.taskQueue);
    const ch: Channel = await model.createChannel();
    watchChannel(model, ch, { what: "cancelaciones", stopping: () => this.#stopping });
    // A stream consumer needs a prefetch and acks, which only pace the reading.
    await ch.prefetch(CANCEL_PREFETCH);
    const token = crypto.randomUUID();
    const caughtUp = Promise.withResolvers<void>();
    await ch.consume(stream, (msg) => {
      if (msg === null) {
        log.warn(`RabbitMQ canceló la lectura de "${stream}"; se reconecta`);
        model.close().catch(() => {});
        return;
      }
      const offset = Number(msg.properties.headers?.["x-stream-offset"]);
      if (Number.isSafeInteger(offset)) this.#cancelOffset = offset + 1;
      ch.ack(msg);
      if (!verified(this.#options.signer, "control", msg)) {
        this.#rejects.note(stream, "se ignora");
        return;
      }
      const message = _readControl(msg);
      if (message === undefined) return;
      if (message.type === "mark") {
        if (message.token === token) caughtUp.resolve();
        return;
      }
      const seconds = msg.properties.timestamp;
      onControl(message, typeof seconds === "number" ? seconds * 1000 : Date.now());
    }, { noAck: false, arguments: { "x-stream-offset": this.#cancelOffset ?? "first" } });
    const mark: ControlMessage = { type: "mark", token };
    await confirmPublish(
      confirm,
      signed(this.#options.signer, "control", {
        exchange: "",
        routingKey: stream,
        body: Buffer.from(JSON.stringify(mark)),
        props: { persistent: true, contentType: "application/json" },
      }),
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        caughtUp.promise,
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new Error(`Cannot read "${stream}" up to now within ${CANCEL_SYNC_MS} ms`)),
            CANCEL_SYNC_MS,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts a consumer on each of the worker's type queues, unless it stopped consuming. */
  async #consume(ch: ConfirmChannel, model: ChannelModel): Promise<void> {
    if (!this.#consuming) return;
    for (const queue of this.#queues) {
      const reply = await ch.consume(queue, (msg) => {
        if (msg === null) {
          log.warn(`RabbitMQ canceló el consumo de la cola "${queue}"; se reconecta`);
          model.close().catch(() => {});
          return;
        }
        if (!verified(this.#options.signer, "task", msg)) {
          // Never run: to the dead-letter queue, where `dlq` will not requeue it either.
          this.#rejects.note(queue, "se envía a la cola de mensajes muertos sin ejecutarlo");
          try {
            ch.nack(msg, false, false);
          } catch {
            // the channel is gone: the broker keeps the message
          }
          return;
        }
        this.#receive(ch, msg);
      }, { noAck: false });
      this.#consumerTags.push(reply.consumerTag);
    }
  }

  /** Holds a message of a task queue: its tasks wait for their turn to run (see {@linkcode #pump}). */
  #receive(ch: ConfirmChannel, msg: ConsumeMessage): void {
    const flow = this.#flows.get(ch);
    if (flow === undefined || flow.closed) return;
    flow.window.hold(msg);
    // A batch with one unreadable task is unreadable as a whole: one delivery without a task.
    const read = readTasks(msg.content);
    const share = Math.max(1, Math.floor(this.#options.prefetch / 4));
    if (
      read !== null && read.length > share && msg.properties.headers?.[BULK_HEADER] === true &&
      !msg.fields.redelivered && this.#consuming
    ) {
      this.#shareOut(flow, ch, msg, read, share);
      return;
    }
    const held = new _Held(msg);
    const tasks: (TaskMessage | null)[] = read ?? [null];
    for (const task of tasks) held.deliveries.push(new _Delivery(task, held, ch));
    held.unsettled = tasks.length;
    flow.heldMessages++;
    flow.heldTasks += tasks.length;
    if (!this.#consuming) {
      // Came after the consumers were cancelled: handed back whole.
      for (const d of held.deliveries) this.#settle(d, "requeue");
      return;
    }
    flow.waiting.push(...held.deliveries);
    if (tasks.length > 1 || flow.prefetch !== this.#wantedPrefetch(flow)) {
      this.#schedulePrefetch(flow, ch);
    }
    this.#pump(flow);
  }

  /**
   * Shares out a bulk message larger than this worker's fair share (see `BULK_HEADER`): publishes its
   * tasks again, unchanged, in messages of `share` tasks to the same queue, and acks the bulk once the
   * broker has confirmed every one of them (it is requeued whole when one fails: at-least-once). None of
   * its tasks runs here before it comes back in one of those messages.
   */
  #shareOut(
    flow: _Flow,
    ch: ConfirmChannel,
    msg: ConsumeMessage,
    tasks: readonly TaskMessage[],
    share: number,
  ): void {
    const copies: Promise<void>[] = [];
    for (let i = 0; i < tasks.length; i += share) {
      const chunk = tasks.slice(i, i + share).map((task) => ({ task, json: taskJson(task) }));
      const outgoing = tasksToTheirQueue(this.#options.taskQueue, chunk);
      copies.push(confirmPublish(ch, signed(this.#options.signer, "task", outgoing)));
    }
    const done = Promise.all(copies).then(
      () => flow.window.ack(msg),
      (err: unknown) => {
        log.error("No se pudo repartir un lote grande de tareas; vuelve entero a la cola", err);
        flow.window.nack(msg, true);
      },
    ).catch((err: unknown) => {
      log.error("No se pudo confirmar una tarea a RabbitMQ; se volverá a entregar", err);
    }).finally(() => this.#handingBack.delete(done));
    this.#handingBack.add(done);
  }

  /** Hands waiting deliveries to `onTask` while fewer than `prefetch` are running. */
  #pump(flow: _Flow): void {
    while (
      this.#consuming && !flow.closed && flow.head < flow.waiting.length &&
      flow.running < this.#options.prefetch
    ) {
      const delivery = flow.waiting[flow.head++]!;
      delivery.state = "running";
      flow.running++;
      this.#options.onTask(delivery);
    }
    if (flow.head === flow.waiting.length) {
      flow.waiting = [];
      flow.head = 0;
    } else if (flow.head > 1024 && flow.head * 2 > flow.waiting.length) {
      flow.waiting = flow.waiting.slice(flow.head);
      flow.head = 0;
    }
  }

  /** Pumps a flow once its settling caller has returned (settling may happen inside `onTask`). */
  #schedulePump(flow: _Flow): void {
    if (flow.pumpScheduled || flow.head === flow.waiting.length) return;
    flow.pumpScheduled = true;
    queueMicrotask(() => {
      flow.pumpScheduled = false;
      this.#pump(flow);
    });
  }

  /**
   * Sets the channel's prefetch, at most once per event-loop turn, to what lets the broker send a new
   * message only while the tasks held stay under the concurrency: `max(1, concurrency - (tasks held -
   * messages held))`, which is the concurrency itself while every message holds one task.
   */
  /** The prefetch that lets the broker send a message only while the tasks held are under the concurrency. */
  #wantedPrefetch(flow: _Flow): number {
    return Math.max(1, this.#options.prefetch - (flow.heldTasks - flow.heldMessages));
  }

  #schedulePrefetch(flow: _Flow, ch: ConfirmChannel): void {
    if (flow.prefetchScheduled || flow.prefetch === 0) return;
    flow.prefetchScheduled = true;
    setTimeout(() => {
      flow.prefetchScheduled = false;
      if (flow.closed) return;
      const wanted = this.#wantedPrefetch(flow);
      if (wanted === flow.prefetch) return;
      flow.prefetch = wanted;
      ch.prefetch(wanted, true).catch(() => {
        // the channel is gone: the next one starts from the concurrency
      });
    }, 0);
  }

  async stopConsuming(): Promise<void> {
    this.#consuming = false;
    const ch = this.#ch;
    const tags = this.#consumerTags;
    this.#consumerTags = [];
    if (ch === undefined) return;
    // Tasks that have not started go back to the queue now: another worker can run them.
    const flow = this.#flows.get(ch);
    if (flow !== undefined) {
      const waiting = flow.waiting.slice(flow.head);
      flow.waiting = [];
      flow.head = 0;
      for (const d of waiting) this.#settle(d, "requeue");
    }
    await Promise.all(tags.map((tag) => ch.cancel(tag).catch(() => {})));
  }

  async publishReports(batch: ReportBatch, deliveries: readonly TaskDelivery[]): Promise<void> {
    await confirmPublish(
      this.#ch,
      signed(this.#options.signer, "results", {
        exchange: "",
        routingKey: this.#options.resultQueue,
        body: Buffer.from(JSON.stringify({ v: QUEUE_FORMAT, ...batch })),
        props: { persistent: true, contentType: "application/json" },
      }),
    );
    for (const d of deliveries) this.#settle(d, "ack");
  }

  async publishTaskCopy(task: TaskMessage, delayMs: number): Promise<void> {
    const ch = this.#ch;
    const own = typeQueue(this.#options.taskQueue, task.type);
    let queue = own;
    if (delayMs > 0) {
      const delay = Math.min(Math.round(delayMs), MAX_RETRY_DELAY_MS);
      if (ch === undefined) throw unavailable();
      try {
        queue = await this.#retryQueue(ch, own, delay);
      } catch (err) {
        throw unavailable(err);
      }
    }
    await confirmPublish(ch, signed(this.#options.signer, "task", taskTo(queue, task)));
  }

  /** The retry queue of `own` for `delayMs`, declared once per connection. */
  async #retryQueue(ch: ConfirmChannel, own: string, delayMs: number): Promise<string> {
    const key = `${own}\n${delayMs}`;
    if (this.#retryQueues.has(key)) return retryQueue(own, delayMs);
    const queue = await declareRetryQueue(ch, {
      typeQueue: own,
      delayMs,
      queueType: this.#options.queueType,
    });
    this.#retryQueues.add(key);
    return queue;
  }

  async publishDeadLetter(task: TaskMessage, error: WireError): Promise<void> {
    await confirmPublish(
      this.#ch,
      signed(this.#options.signer, "task", deadLetterTo(this.#options.taskQueue, task, error)),
    );
  }

  publishHeartbeat(heartbeat: Heartbeat): void {
    const ch = this.#ch;
    if (ch === undefined) return;
    try {
      const message = signed(this.#options.signer, "heartbeat", {
        exchange: heartbeatExchange(this.#options.resultQueue),
        routingKey: "",
        body: Buffer.from(JSON.stringify(heartbeat)),
        props: { persistent: false, contentType: "application/json", expiration: "15000" },
      });
      ch.publish(message.exchange, message.routingKey, message.body, message.props);
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

  isStale(delivery: TaskDelivery): boolean {
    return this.#deadChannels.has(_own(delivery).ch);
  }

  /**
   * Settles a delivery on the channel it came from, never on another: a delivery tag belongs to its channel,
   * and acking it on the channel of a later connection is a channel error there. After a reconnect the
   * broker redelivers the task instead. Acks wait for the end of the event-loop turn, to leave together
   * (see {@linkcode AckWindow}); rejections leave at once.
   *
   * A delivery of a batch settles only its task; the message is settled with its last task: acked when
   * none was handed back, requeued whole when all were, and otherwise acked once the tasks handed back are
   * published again, each on its own (the message is requeued whole if that fails: at-least-once).
   */
  #settle(delivery: TaskDelivery, how: "ack" | "requeue" | "dead-letter"): void {
    const own = _own(delivery);
    if (this.#deadChannels.has(own.ch)) return;
    const flow = this.#flows.get(own.ch);
    if (flow === undefined || flow.closed) return;
    if (own.state !== "running" && own.state !== "waiting") return;
    const held = own.held;
    const batch = held.deliveries.length > 1;
    if (how === "dead-letter" && batch) {
      throw new TypeError("Cannot discard one task of a batch message: every task of it was read");
    }
    if (own.state === "running") flow.running--;
    own.state = how === "ack" ? "acked" : how === "requeue" ? "released" : "discarded";
    if (how === "requeue") held.released.push(own);
    flow.heldTasks--;
    held.unsettled--;
    this.#schedulePump(flow);
    if (batch) this.#schedulePrefetch(flow, own.ch);
    if (held.unsettled > 0) return;
    flow.heldMessages--;
    try {
      if (!batch) {
        if (how === "ack") flow.window.ack(held.msg);
        else flow.window.nack(held.msg, how === "requeue");
      } else if (held.released.length === 0) flow.window.ack(held.msg);
      else if (held.released.length === held.deliveries.length) flow.window.nack(held.msg, true);
      else this.#handBack(flow, held);
    } catch (err) {
      log.error("No se pudo confirmar una tarea a RabbitMQ; se volverá a entregar", err);
    }
  }

  /** Publishes the released tasks of a partly run batch on their own, then acks the message. */
  #handBack(flow: _Flow, held: _Held): void {
    const copies = held.released.map((d) => this.publishTaskCopy(d.task!, 0));
    const done = Promise.all(copies).then(
      () => flow.window.ack(held.msg),
      (err: unknown) => {
        log.error(
          "No se pudieron devolver a la cola las tareas sin empezar de un lote; vuelve entero",
          err,
        );
        flow.window.nack(held.msg, true);
      },
    ).catch((err: unknown) => {
      log.error("No se pudo confirmar una tarea a RabbitMQ; se volverá a entregar", err);
    }).finally(() => this.#handingBack.delete(done));
    this.#handingBack.add(done);
  }

  async drain(): Promise<void> {
    clearTimeout(this.#startTimer);
    this.#current = undefined;
    await this.stopConsuming();
    await Promise.allSettled([...this.#handingBack]);
    this.#stopping = true;
    const ch = this.#ch;
    this.#ch = undefined;
    try {
      if (ch !== undefined) this.#flows.get(ch)?.window.flush();
    } catch {
      // the channel is gone: the broker delivers the unacked tasks again
    }
    await closeChannel(ch);
    await this.#session?.close();
  }

  closed(): Promise<void | Error> {
    return this.#session?.closed() ?? Promise.resolve();
  }
}
