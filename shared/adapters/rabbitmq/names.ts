/**
 * Names of the RabbitMQ queues and exchanges colmena declares, derived from the configured task and result
 * queue names; `topology.ts` describes what each one is for.
 *
 * @module
 */

/** Queue names shared by servers and workers. */
export interface QueueNames {
  /**
   * The task queue's name: the prefix of every task type's queue, of the dead-letter queue and of the control
   * exchange. No task waits in the queue of this exact name. @defaultValue `"task_queue"`
   */
  taskQueue: string;
  /** The result queue. @defaultValue `"result_queue"` */
  resultQueue: string;
  /**
   * What the durable queues are (task queues, retry queues, dead letters, results): `classic` (one node,
   * priorities 0–9) or `quorum` (replicated by Raft across a cluster, an explicit delivery limit, no
   * priorities on RabbitMQ 3.x). Every server and worker of a deployment must use the same. @defaultValue `"classic"`
   */
  queueType?: QueueType;
}

/** The kinds of durable queues colmena can declare. */
export const QUEUE_TYPES = ["classic", "quorum"] as const;

/** One of {@linkcode QUEUE_TYPES}. */
export type QueueType = (typeof QUEUE_TYPES)[number];

/**
 * Deliveries of one message after which a quorum queue dead-letters it (`x-delivery-limit`): a safety net
 * under the worker's own count (`maxDeliveries`), which republishes a fresh copy on each redelivery.
 */
export const QUORUM_DELIVERY_LIMIT = 20;

/** Longest wait in a retry queue. */
export const MAX_RETRY_DELAY_MS = 300_000;

/**
 * The queue of one task type: `<taskQueue>.<type>`. Type names match `^[A-Za-z][A-Za-z0-9_-]{0,63}$` and
 * `dlq` is reserved, so it never collides with {@linkcode deadLetterQueue}.
 */
export function typeQueue(taskQueue: string, type: string): string {
  return `${taskQueue}.${type}`;
}

/** The dead-letter queue of a task queue, shared by every task type. */
export function deadLetterQueue(taskQueue: string): string {
  return `${taskQueue}.dlq`;
}

/** The retry queue of a type's queue for one delay; it dead-letters back to that type's queue. */
export function retryQueue(typeQueueName: string, delayMs: number): string {
  return `${typeQueueName}.retry.${delayMs}`;
}

/** The direct exchange through which servers forward results to the server that accepted the task. */
export function repliesExchange(resultQueue: string): string {
  return `${resultQueue}.replies`;
}

/** A server's own reply queue, bound to {@linkcode repliesExchange} with its id. */
export function serverQueue(resultQueue: string, serverId: string): string {
  return `${resultQueue}.server.${serverId}`;
}

/** The fanout exchange from servers to every worker (cancellations). */
export function controlExchange(taskQueue: string): string {
  return `${taskQueue}.control`;
}

/**
 * The stream that keeps every cancellation sent through {@linkcode controlExchange} for a day, so that a
 * worker that connects later still learns of it. Its name has a dot after the task queue's and task type
 * names have none, so it never collides with a type's queue.
 */
export function cancelStream(taskQueue: string): string {
  return `${taskQueue}.control.cancels`;
}

/** The fanout exchange from workers to every server (heartbeats). */
export function heartbeatExchange(resultQueue: string): string {
  return `${resultQueue}.heartbeats`;
}
