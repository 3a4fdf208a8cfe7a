/**
 * The messages that travel through RabbitMQ between servers and workers.
 *
 * Each task type's queue (`task_queue.<type>`) carries one {@linkcode TaskMessage} per message, or a
 * {@linkcode TaskBatchMessage}: several tasks of that type and priority that a server published in the same
 * event-loop turn, packed so the broker handles one message for them (each task keeps its own id, record,
 * attempts, timeout and result).
 * `result_queue` carries {@linkcode ResultBatch}es: a worker packs every result (and every "started"
 * notice) of one turn into one persistent message, so the broker handles one message per batch, not one
 * per task.
 *
 * @module
 */
import { z } from "zod";
import { CLIENT_KINDS, WireErrorSchema } from "./protocol.ts";

/** Version of the broker message format. */
export const QUEUE_FORMAT = 1;

/** The most attempts a task may be given. */
export const MAX_ATTEMPTS_LIMIT = 20;

/** A task as it waits in the queue of its type (`task_queue.<type>`). */
export const TaskMessage = z.object({
  v: z.literal(QUEUE_FORMAT),
  taskId: z.string(),
  type: z.string(),
  /** The validated payload; absent when it was stored as an object (`payloadRef`). */
  payload: z.unknown().optional(),
  client: z.object({ name: z.string(), kind: z.enum(CLIENT_KINDS) }),
  /** The id of the server that accepted it: its results are pushed through that server. */
  origin: z.string(),
  priority: z.number().int().min(0).max(9),
  timeoutMs: z.number().int().positive(),
  submittedAt: z.string(),
  attempt: z.number().int().positive(),
  /** Attempts allowed before the task fails for good. */
  maxAttempts: z.number().int().positive().max(MAX_ATTEMPTS_LIMIT).default(3),
  /**
   * How many times this attempt has been delivered to a worker. A worker that gets a redelivery (its
   * previous holder died) republishes the task with this count raised, so a task that kills its worker
   * every time is stopped after a bound instead of looping.
   */
  deliveries: z.number().int().positive().default(1),
  /** The blob key of a payload stored as an object (claim check); `payload` is then absent. */
  payloadRef: z.string().optional(),
  /** An uploaded file whose UTF-8 text becomes `payload[field]` before the task runs. */
  file: z.object({ ref: z.string(), field: z.string() }).optional(),
});

/** A task as it waits in the queue of its type (`task_queue.<type>`). */
export type TaskMessage = z.output<typeof TaskMessage>;

/** The AMQP header that marks a {@linkcode TaskBatchMessage} and says how many tasks it carries. */
export const TASKS_HEADER = "x-colmena-tareas";

/**
 * The AMQP header (`true`) that marks a {@linkcode TaskBatchMessage} packed from a `submit_many` beyond the
 * workers' fairness cap (up to `MAX_BULK_TASKS`). A worker that takes one with more tasks than its fair
 * share (a quarter of its concurrency, at least 1) runs none of it: it publishes the tasks again in
 * messages of its fair share, and acknowledges the bulk once the broker confirmed them all, so that no
 * worker holds tasks that another one could run sooner. A bulk that comes redelivered is not split.
 */
export const BULK_HEADER = "x-colmena-lote";

/** Most tasks in one bulk message (see {@linkcode BULK_HEADER}). */
export const MAX_BULK_TASKS = 1_000;

/**
 * Several tasks of one type and priority in one message of their type's queue (at least 2: a group of one
 * travels as a plain {@linkcode TaskMessage}). Its `x-colmena-tareas` header holds the count. A worker runs
 * each task as if it had come alone, and acknowledges the message once every task of it is settled.
 */
export const TaskBatchMessage = z.object({
  v: z.literal(QUEUE_FORMAT),
  tasks: z.array(TaskMessage).min(2),
});

/** Several tasks of one type and priority in one message. */
export type TaskBatchMessage = z.output<typeof TaskBatchMessage>;

/** The end of one task, as a worker reports it. */
export const ResultMessage = z.object({
  taskId: z.string(),
  taskType: z.string(),
  origin: z.string(),
  status: z.enum(["succeeded", "failed"]),
  output: z.unknown().optional(),
  /** The blob key of an output stored as an object (claim check); `output` is then absent. */
  outputRef: z.string().optional(),
  /** The size of that object in bytes. */
  outputBytes: z.number().int().nonnegative().optional(),
  error: WireErrorSchema.optional(),
  worker: z.string(),
  durationMs: z.number(),
  startedAt: z.string(),
  finishedAt: z.string(),
  attempt: z.number().int().positive(),
});

/** The end of one task, as a worker reports it. */
export type ResultMessage = z.output<typeof ResultMessage>;

/** The start of one task, as a worker reports it. */
export const StartedNotice = z.object({
  taskId: z.string(),
  origin: z.string(),
  worker: z.string(),
  startedAt: z.string(),
  /** 1 for the first attempt. */
  attempt: z.number().int().positive().default(1),
});

/** The start of one task, as a worker reports it. */
export type StartedNotice = z.output<typeof StartedNotice>;

/** A failed attempt that will be retried after `delayMs`. */
export const RetryNotice = z.object({
  taskId: z.string(),
  origin: z.string(),
  worker: z.string(),
  attempt: z.number().int().positive(),
  delayMs: z.number().int().nonnegative(),
  error: WireErrorSchema,
});

/** A failed attempt that will be retried. */
export type RetryNotice = z.output<typeof RetryNotice>;

/** What one `result_queue` message carries. */
export const ResultBatch = z.object({
  v: z.literal(QUEUE_FORMAT),
  /** Sent by another server that consumed it from the result queue (and recorded it already). */
  forwarded: z.boolean().default(false),
  started: z.array(StartedNotice).default([]),
  retrying: z.array(RetryNotice).default([]),
  results: z.array(ResultMessage).default([]),
});

/** What one `result_queue` message carries. */
export type ResultBatch = z.output<typeof ResultBatch>;

/**
 * How long a cancellation holds for workers: a worker that receives, within this time of the cancel, a task
 * it names drops it without running it, even if the worker connected after the cancel was sent.
 */
export const CANCEL_MEMORY_MS = 24 * 60 * 60_000;

/** A message from servers to every worker, on the control exchange (and kept in the cancel stream). */
export const ControlMessage = z.discriminatedUnion("type", [
  /** These tasks were cancelled while queued: a worker that gets one drops it. */
  z.object({ type: z.literal("cancel"), taskIds: z.array(z.string()).max(10_000) }),
  /**
   * A worker's bookmark in the cancel stream, written by the worker itself and ignored by every other: once
   * it has read its own mark back, it has seen every cancel sent before it. Servers never send it.
   */
  z.object({ type: z.literal("mark"), token: z.string() }),
]);

/** A message from servers to every worker. */
export type ControlMessage = z.output<typeof ControlMessage>;

/** A worker's periodic sign of life, on the heartbeat exchange. */
export const Heartbeat = z.object({
  worker: z.string(),
  host: z.string(),
  pid: z.number().int(),
  concurrency: z.number().int(),
  inProgress: z.number().int().nonnegative(),
  processed: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  startedAt: z.string(),
  at: z.string(),
  /** The worker is shutting down: it takes no more tasks. */
  stopping: z.boolean().default(false),
  /** The task types the worker consumes; empty from a worker older than this field. */
  types: z.array(z.string()).default([]),
  /** The worker's last heartbeat: it has drained and is exiting; servers forget it at once. */
  stopped: z.boolean().default(false),
  /**
   * The worker reads {@linkcode TaskBatchMessage}s; false from a worker older than this field, and servers
   * publish no batch of a type such a worker runs.
   */
  batches: z.boolean().default(false),
  /**
   * The worker shares out a bulk message larger than its fair share (see {@linkcode BULK_HEADER}); false
   * from a worker older than this field, and servers then cap a bulk of a type such a worker runs at the
   * fairness cap, as any batch.
   */
  bulks: z.boolean().default(false),
});

/** A worker's periodic sign of life. */
export type Heartbeat = z.output<typeof Heartbeat>;
