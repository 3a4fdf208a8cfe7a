/**
 * The narrow interfaces between colmena's roles and the systems behind them, in colmena's own words.
 *
 * No connection, channel or transaction type appears here: an adapter owns those. Delivery through the broker
 * is at-least-once: a task or a result batch can arrive twice after a crash or a reconnect, so consumers
 * dedupe by task id.
 *
 * @module
 */
import type { ResultBatch, ResultMessage, StartedNotice, TaskMessage } from "./queue_messages.ts";
import type { TaskView } from "./protocol.ts";

/** Something long-lived that can be stopped gracefully and tells when it has stopped. */
export interface Closable {
  /** Stops taking new work, finishes or hands back what it holds, then closes. */
  drain(): Promise<void>;
  /** Resolves when it has closed: with nothing after `drain()`, with the reason after a failure. */
  closed(): Promise<void | Error>;
}

/** What the server needs from the broker. */
export interface ServerBroker extends Closable {
  /**
   * Publishes a task durably. Resolves only once the broker has confirmed it is stored; rejects with
   * `BROKER_UNAVAILABLE` when it is not (the task may then or may not be queued: callers treat it as unknown).
   */
  publishTask(task: TaskMessage): Promise<void>;
  /**
   * Sends results that belong to another server to that server. Resolves when the broker has them; after a
   * reject the caller keeps the results' source unacknowledged, so they come again.
   */
  forwardResults(origin: string, batch: ResultBatch): Promise<void>;
  /** Whether the broker connection is up right now. */
  readonly connected: boolean;
}

/** Receives what workers report. The broker acknowledges a batch only after the returned promise resolves. */
export type ResultBatchHandler = (batch: ResultBatch) => void | Promise<void>;

/** One task delivered to a worker. */
export interface TaskDelivery {
  /** The task, or `null` when the message could not be read (it is then rejected to the dead-letter queue). */
  readonly task: TaskMessage | null;
  /** Whether the broker says it delivered this message before (a crash or a hand-back happened). */
  readonly redelivered: boolean;
}

/** What the worker needs from the broker. */
export interface WorkerBroker extends Closable {
  /**
   * Publishes started notices and results in one persistent message; resolves once the broker confirmed it.
   * Then, and only then, the tasks of `results` are acknowledged.
   */
  publishResults(
    started: readonly StartedNotice[],
    results: readonly ResultMessage[],
    deliveries: readonly TaskDelivery[],
  ): Promise<void>;
  /** Hands a task back to the queue unprocessed (shutdown). */
  release(delivery: TaskDelivery): void;
  /** Removes an unreadable task message from the queue, to the dead-letter queue. */
  discard(delivery: TaskDelivery): void;
}

/** Keeps the record of every task the server knows. */
export interface TaskStore {
  /** Records a task that was just accepted, in state `queued`. */
  create(view: TaskView): Promise<void> | void;
  /** Marks a task `running` on a worker; ignored when the task is already final. */
  markStarted(notice: StartedNotice): Promise<void> | void;
  /**
   * Records a task's end. Returns `true` the first time and `false` for a duplicate, which the caller must
   * not deliver again (effectively-once results over at-least-once delivery).
   */
  complete(result: ResultMessage): Promise<boolean> | boolean;
  /** Forgets a task whose submission failed before it was accepted. */
  remove(taskId: string): Promise<void> | void;
  /** The record of a task, or `undefined` when this store has none. */
  get(taskId: string): Promise<TaskView | undefined> | TaskView | undefined;
}
