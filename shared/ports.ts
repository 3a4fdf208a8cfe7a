/**
 * The narrow interfaces between colmena's roles and the systems behind them, in colmena's own words.
 *
 * No connection, channel or transaction type appears here: an adapter owns those. Delivery through the broker
 * is at-least-once: a task or a result batch can arrive twice after a crash or a reconnect, so consumers
 * dedupe by task id.
 *
 * @module
 */
import type {
  ControlMessage,
  Heartbeat,
  ResultBatch,
  ResultMessage,
  RetryNotice,
  StartedNotice,
  TaskMessage,
} from "./queue_messages.ts";
import type { ClientKind, TaskStatus, TaskView } from "./protocol.ts";
import type { WireError } from "./errors.ts";

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
   * Publishes a task durably to the queue of its type, where only workers that run that type take it (a
   * task of a type no worker runs yet waits there, provided its queue was declared). Resolves only once the broker has confirmed it is stored;
   * rejects with `BROKER_UNAVAILABLE` when the message could not be sent (not queued), or with
   * `PUBLISH_UNCONFIRMED` when it was sent and no confirm came (it may or may not be queued). Tasks of one
   * type and priority published in the same event-loop turn may travel in one message: each resolves or
   * rejects with that message's confirm, exactly as if it had travelled alone. A `bulk` task (one of a
   * `submit_many`) may share its message with many more (a bulk message, which the worker that takes it
   * shares out in messages of its fair share before running any).
   */
  publishTask(task: TaskMessage, options?: { bulk?: boolean }): Promise<void>;
  /**
   * {@linkcode publishTask} for many tasks at once, without a promise per task: `settled` is told the outcome
   * of each task, by its index in `tasks`, exactly once: no error once the broker confirmed the message that
   * carried it, or the error that `publishTask` would have rejected with. It may be told at once (the broker
   * is draining), or later, in any order.
   */
  publishTasks(
    tasks: readonly TaskMessage[],
    options: { bulk?: boolean; settled: (index: number, error?: unknown) => void },
  ): void;
  /**
   * Sends results that belong to another server to that server. Resolves when the broker has them; after a
   * reject the caller keeps the results' source unacknowledged, so they come again.
   */
  forwardResults(origin: string, batch: ResultBatch): Promise<void>;
  /** Whether the broker connection is up right now. */
  readonly connected: boolean;
  /**
   * Whether the broker blocks this server's publishing (a memory or disk alarm): new tasks are refused with
   * `BROKER_BLOCKED` until it unblocks; results still come in.
   */
  readonly blocked: boolean;
  /** Resolves `true` once connected (at once if it is), or `false` after `timeoutMs`. */
  waitConnected(timeoutMs: number): Promise<boolean>;
  /**
   * Sends a control message (a cancellation) to every worker; resolves on the broker's confirm, once the
   * message is also kept for `CANCEL_MEMORY_MS`: a worker that connects within that time still sees it
   * before it takes any task.
   */
  publishControl(message: ControlMessage): Promise<void>;
  /**
   * The first `limit` tasks of the dead-letter queue, oldest first, left in place. Rejects with
   * `BROKER_UNAVAILABLE` while disconnected.
   */
  listDeadLetters(limit: number): Promise<DeadLetter[]>;
  /**
   * Moves dead-lettered tasks back to the queue of their type for a fresh set of attempts (attempt and
   * deliveries back to 1): those with the given ids, or the first `limit` when `taskIds` is undefined.
   * `beforePublish` runs for each task found, before it is published again (the server reopens its record
   * there, so that the new result is not taken for a duplicate); when it rejects, that task stays in the
   * dead-letter queue. Each task leaves the dead-letter queue only after its copy is confirmed. Returns the
   * tasks moved. Rejects with `BROKER_UNAVAILABLE` while disconnected.
   */
  requeueDeadLetters(
    taskIds: readonly string[] | undefined,
    limit: number,
    beforePublish?: (task: TaskMessage) => Promise<void>,
  ): Promise<TaskMessage[]>;
  /**
   * How many messages wait right now in each queue operators watch: the queue of every task type this server
   * knows, their retry queues for the default backoff that exist, the result queue and the dead-letter queue.
   * Read with a passive declare (nothing is created). Rejects with `BROKER_UNAVAILABLE` while disconnected.
   */
  queueDepths(): Promise<QueueDepth[]>;
  /** Times the connection was lost and made again since start-up. */
  readonly reconnects: number;
}

/** What kind of queue a {@linkcode QueueDepth} is about. */
export type QueueKind = "task" | "retry" | "result" | "dlq";

/** Messages waiting in one queue, as operators see it. */
export interface QueueDepth {
  /** The queue's name. */
  readonly queue: string;
  readonly kind: QueueKind;
  /** The task type of a `task` or `retry` queue. */
  readonly taskType?: string;
  /** Messages ready to be delivered (not those delivered and unacknowledged). */
  readonly messages: number;
  /** Consumers attached. */
  readonly consumers: number;
}

/** A task waiting in the dead-letter queue, as operators see it. */
export interface DeadLetter {
  readonly taskId: string;
  readonly taskType: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly client: { name: string; kind: string };
  readonly submittedAt: string;
  /** The error it failed with for good, or `null` when the broker rejected it unread. */
  readonly error: { code: string; message: string } | null;
  /** When it failed for good (ISO 8601), or `null` when unknown. */
  readonly deadAt: string | null;
}

/**
 * Receives workers' heartbeats, each worker's roughly every few seconds. Heartbeats are transient: one
 * missed is no fault, and none arrives while the broker is down.
 */
export type HeartbeatHandler = (heartbeat: Heartbeat) => void;

/** Receives what workers report. The broker acknowledges a batch only after the returned promise resolves. */
export type ResultBatchHandler = (batch: ResultBatch) => void | Promise<void>;

/** One task delivered to a worker. */
export interface TaskDelivery {
  /** The task, or `null` when the message could not be read (it is then rejected to the dead-letter queue). */
  readonly task: TaskMessage | null;
  /** Whether the broker says it delivered this message before (a crash or a hand-back happened). */
  readonly redelivered: boolean;
}

/** What a worker reports in one message: starts, attempts to be retried, and ends. */
export interface ReportBatch {
  readonly started: readonly StartedNotice[];
  readonly retrying: readonly RetryNotice[];
  readonly results: readonly ResultMessage[];
}

/** What the worker needs from the broker. */
export interface WorkerBroker extends Closable {
  /**
   * Publishes a batch of reports in one persistent message; resolves once the broker confirmed it. Then, and
   * only then, the given deliveries are acknowledged.
   */
  publishReports(batch: ReportBatch, deliveries: readonly TaskDelivery[]): Promise<void>;
  /**
   * Publishes a copy of a task (its next attempt, or a counted redelivery) durably: to the queue of its type
   * after `delayMs`, or at once when it is 0. Resolves on the broker's confirm.
   */
  publishTaskCopy(task: TaskMessage, delayMs: number): Promise<void>;
  /** Publishes a task that failed for good to the dead-letter queue with its error; resolves on confirm. */
  publishDeadLetter(task: TaskMessage, error: WireError): Promise<void>;
  /** Acknowledges a delivery whose outcome is already safe elsewhere (a copy was confirmed). */
  ack(delivery: TaskDelivery): void;
  /** Hands a task back to the queue unprocessed (shutdown). */
  release(delivery: TaskDelivery): void;
  /** Removes an unreadable task message from the queue, to the dead-letter queue. */
  discard(delivery: TaskDelivery): void;
  /**
   * Whether a delivery came on a connection (a channel) that has since closed. The broker put such a task
   * back in its queue, so another worker may already be running it; acknowledging, releasing or discarding
   * it does nothing, and what its run leads to (a retry, a dead letter) is up to the run of the redelivery.
   */
  isStale(delivery: TaskDelivery): boolean;
}

/** A task to record at submit time. */
export interface NewTask {
  readonly taskId: string;
  readonly taskType: string;
  readonly priority: number;
  readonly client: { readonly name: string; readonly kind: ClientKind };
  /** ISO 8601 time of the submit. */
  readonly submittedAt: string;
  /** The id of the server that accepted it. */
  readonly origin: string;
  /** The validated payload, unless it was stored as an object (`payloadRef`). */
  readonly payload?: unknown;
  /** The blob key of a payload too large for the queue (claim check). */
  readonly payloadRef?: string;
  /** The blob key of the uploaded file the task reads (`task.file.ref`); deleted with the record. */
  readonly fileRef?: string;
  /** Attempts allowed. */
  readonly maxAttempts: number;
  /** Longest one attempt may run, in milliseconds. */
  readonly timeoutMs: number;
  /** The client's idempotency key: a second task with the same key and owner is the first one. */
  readonly idempotencyKey?: string;
  /**
   * The principal that owns the task (see `server/principal.ts`): who may see it, and the scope of its
   * idempotency key. @defaultValue `client.name`
   */
  readonly owner?: string;
}

/** A filter and page of `list`. Results come newest first (by submit time, then task id). */
export interface TaskQuery {
  readonly statuses?: readonly TaskStatus[];
  readonly taskType?: string;
  readonly clientKind?: ClientKind;
  readonly clientName?: string;
  /** Only the tasks of this principal (see {@linkcode NewTask.owner}). */
  readonly owner?: string;
  /** Submitted at or after this ISO 8601 time. */
  readonly since?: string;
  /** Submitted before this ISO 8601 time. */
  readonly until?: string;
  /** Records in one page, 1 to 500. */
  readonly limit: number;
  /** Where the previous page ended (`nextCursor`); opaque. */
  readonly cursor?: string;
}

/** One page of `list`. */
export interface TaskPage {
  readonly items: readonly TaskView[];
  /** The cursor of the next page, or `null` on the last one. */
  readonly nextCursor: string | null;
}

/** What `cancel` found. */
export type CancelOutcome = "cancelled" | "too_late" | "not_found";

/**
 * Keeps the record of every task, from submit to final state; the source of truth that any server can answer
 * from. Final states (`succeeded`, `failed`, `cancelled`) are never left: a later `complete` or `cancel` of a
 * final task changes nothing, which is how duplicate deliveries are absorbed. Writes apply in the order they
 * were called, those called in one event-loop turn in one transaction where the store has transactions.
 */
export interface TaskStore {
  /**
   * Whether other servers write to the same records (PostgreSQL). A store only this server writes applies
   * writes in the order they were asked for, so this server's `create` of a task always lands before any
   * result of it; a shared one gives no such order.
   */
  readonly shared?: boolean;
  /**
   * Whether a `create` without an idempotency key completes the record that a result of the same task left
   * when it was written first (`complete` of an unknown task, from another server), keeping that result, and
   * answers `created: true`. With it, a shared store gives the same safety as one this server alone writes
   * for such a task, which may then be published while it is recorded.
   */
  readonly createCompletesOrphans?: boolean;
  /**
   * Records a task in state `queued` and resolves once the record is durable. With an `idempotencyKey`
   * already used by the same owner, records nothing and returns the first task's id, `created: false`.
   */
  create(task: NewTask): Promise<{ taskId: string; created: boolean }>;
  /**
   * Records several tasks, each as {@linkcode create} would (a repeated idempotency key, even one repeated
   * within `tasks`, gives the first task's id and `created: false`), as one write: one transaction where the
   * store has transactions. Resolves once every record is durable, with each task's outcome in the order
   * given; rejects when the write failed, and then, with SQLite and the memory store, none is recorded.
   */
  createMany(tasks: readonly NewTask[]): Promise<{ taskId: string; created: boolean }[]>;
  /**
   * The keys among `keys` that a recorded task of `owner` holds, as the writes committed so far show them.
   * A store only this server writes ({@linkcode shared} unset) gives it, so that the server can publish a
   * keyed task while recording it when no task holds its key and none of its own writes under way takes it.
   */
  takenKeys?(owner: string, keys: readonly string[]): Promise<Set<string>>;
  /** Marks a task `running` on a worker and counts the attempt; ignored when the task is final. */
  markStarted(notice: StartedNotice): Promise<void>;
  /** Puts a running task back to `queued` after a failed attempt that will be retried; ignored when final. */
  markRetrying(taskId: string, error: WireError): Promise<void>;
  /**
   * Records a task's end. Resolves `true` the first time and `false` when the task was already final (a
   * duplicate, which the caller must not deliver again). A result for an unknown task creates its record.
   */
  complete(result: ResultMessage): Promise<boolean>;
  /** Cancels a `queued` task (`cancelled`); a running or final one is `too_late`. */
  cancel(taskId: string): Promise<CancelOutcome>;
  /**
   * Puts a final task back to `queued` for a fresh set of attempts (an operator requeued it from the
   * dead-letter queue): attempts 0, no worker, output, error or finish time. Ignored when not final.
   */
  reopen(taskId: string): Promise<void>;
  /**
   * Notes that the broker confirmed the publish of a task (one with an idempotency key), so that a repeat of
   * its key never queues it a second time. Ignored for an unknown task.
   */
  markPublished(taskId: string): Promise<void>;
  /** {@linkcode markPublished} for several tasks, as one write. */
  markPublishedMany(taskIds: readonly string[]): Promise<void>;
  /** Whether {@linkcode markPublished} was called for the task; `false` for an unknown one. */
  published(taskId: string): Promise<boolean>;
  /** Forgets a task whose submission failed before it was accepted. */
  remove(taskId: string): Promise<void>;
  /** The record of a task, or `undefined` when there is none. */
  get(taskId: string): Promise<TaskView | undefined>;
  /**
   * What a task was recorded with at submit time, payload included (never shown by `get`), so that it can be
   * published again exactly as it was first submitted. `undefined` when there is no record, or when the
   * record was made from a result alone (`complete` of an unknown task).
   */
  submission(taskId: string): Promise<NewTask | undefined>;
  /** A page of records matching `query`, newest first. */
  list(query: TaskQuery): Promise<TaskPage>;
  /**
   * The ids of the records whose task id starts with `prefix`, in byte order, at most `limit` (a range scan
   * of the primary key). A prefix that is not 8 to 128 characters of `0-9`, `a-f` and `-` matches nothing,
   * without reaching the database: how a shortened id (`historial` shows 8 characters) becomes a full one.
   */
  matchIds(prefix: string, limit: number): Promise<string[]>;
  /**
   * Deletes final records that finished before `before`, at most `limit` of them; returns how many, and the
   * blob keys they held, for the caller to delete: payload and output references, and uploaded files no
   * other record reads.
   */
  prune(before: string, limit: number): Promise<{ removed: number; blobKeys: string[] }>;
  /** Which of these uploaded files (`task.file.ref` keys) some record still reads. */
  filesInUse(refs: readonly string[]): Promise<Set<string>>;
  /** Closes connections and files. */
  close(): Promise<void>;
}

/** Stores objects (large payloads, large outputs, uploaded files) by key. */
export interface BlobStore {
  /** Stores an object under `key`, replacing any; resolves once it is durable. */
  put(key: string, data: Uint8Array | ReadableStream<Uint8Array>): Promise<void>;
  /** The object's bytes; rejects with `NOT_FOUND` when there is none. */
  get(key: string): Promise<Uint8Array>;
  /** The object as a stream, for large ones; rejects with `NOT_FOUND` when there is none. */
  stream(key: string): Promise<ReadableStream<Uint8Array>>;
  /** Deletes objects; keys that do not exist are ignored. */
  delete(keys: readonly string[]): Promise<void>;
  /**
   * Every object whose key starts with `prefix` (e.g. `"uploads/"`), with when it was last written, in no
   * set order. Objects written or deleted while listing may or may not appear.
   */
  list(prefix: string): AsyncIterable<BlobInfo>;
  /** Closes clients and files. */
  close(): Promise<void>;
}

/** One object, as {@linkcode BlobStore.list} gives it. */
export interface BlobInfo {
  /** Its key. */
  readonly key: string;
  /** When it was last written. */
  readonly modifiedAt: Date;
}
