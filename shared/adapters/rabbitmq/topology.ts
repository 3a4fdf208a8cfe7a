/**
 * Declares, deletes and measures the RabbitMQ topology servers and workers share.
 *
 * Topology, for task queue `T`, result queue `R` and task types `<type>`:
 * - `T.<type>`: durable, one per task type, priorities 0–9, dead-letters to `T.dlq`. Servers publish each task
 *   to the queue of its type and declare the queue of every type they accept, so a task of a type no worker
 *   runs yet waits there; a worker declares and consumes the queues of the types it runs, and only those.
 *   The queue named `T` itself holds no tasks.
 * - `T.<type>.retry.<ms>`: durable, declared on first use; a failed attempt waits there `<ms>` (queue TTL),
 *   then dead-letters back to `T.<type>` for its next attempt.
 * - `T.dlq`: durable, shared by every type; task messages no worker could read, and tasks that failed for
 *   good. An operator's requeue sends each back to the queue of its type.
 * - `R`: durable; result batches from workers, consumed by every server.
 * - `R.replies`: direct exchange; results that a server consumed for another server go there, routed by the
 *   origin server's id to its queue `R.server.<id>` (durable, removed 5 minutes after its server went away).
 * - `T.control`: fanout exchange from servers to every worker (cancellations), bound to `T.control.cancels`.
 * - `T.control.cancels`: durable stream that keeps the cancellations for `CANCEL_MEMORY_MS` (a day, give or
 *   take a segment). Each worker reads it from the start (or, after a reconnect, from where it stopped) and
 *   follows it, and consumes no task until it has caught up; so a cancel sent before a worker connected
 *   still reaches it.
 * - `R.heartbeats`: fanout exchange from workers to every server; transient messages, exclusive queues.
 *
 * With `queueType: "quorum"`, `T.<type>`, its retry queues, `T.dlq` and `R` are quorum queues (replicated
 * across the nodes of a cluster); the task queues get an explicit delivery limit and no `x-max-priority`,
 * which quorum queues refuse (RabbitMQ 4 orders them in two bands by the message priority on its own). The
 * reply queues stay classic: they only carry pushes for connections of one server.
 *
 * @module
 */
import amqp from "amqplib";
import type { Channel } from "amqplib";
import * as log from "../../log.ts";
import { CANCEL_MEMORY_MS } from "../../queue_messages.ts";
import {
  cancelStream,
  controlExchange,
  deadLetterQueue,
  heartbeatExchange,
  MAX_RETRY_DELAY_MS,
  type QueueNames,
  type QueueType,
  QUORUM_DELIVERY_LIMIT,
  repliesExchange,
  retryQueue,
  typeQueue,
} from "./names.ts";

/** Bytes of one segment of the cancel stream (about 10 000 cancels). */
const CANCEL_SEGMENT_BYTES = 1_000_000;

/**
 * Declares `queue`; when it exists with other arguments (another `--queue-type`, an older version), says so
 * in Spanish before the broker's refusal (PRECONDITION_FAILED, which closes the channel) goes up.
 */
async function _assertQueue(
  ch: Channel,
  queue: string,
  options: { durable: true; arguments?: Record<string, unknown> },
): Promise<void> {
  try {
    await ch.assertQueue(queue, options);
  } catch (err) {
    if ((err as { code?: unknown }).code === 406) {
      log.error(
        `La cola "${queue}" ya existe con otros argumentos (¿otro --queue-type en otro proceso?): ` +
          "use el mismo tipo de cola en todos los servidores y workers, o bórrela",
      );
    }
    throw err;
  }
}

/** The arguments of a durable queue of `queueType`, besides `extra`. */
function _durable(
  queueType: QueueType | undefined,
  extra: Record<string, unknown> = {},
): { durable: true; arguments?: Record<string, unknown> } {
  const args = queueType === "quorum" ? { "x-queue-type": "quorum", ...extra } : extra;
  return Object.keys(args).length === 0 ? { durable: true } : { durable: true, arguments: args };
}

/** Declares what every process shares (not the type queues); idempotent, run after every (re)connect. */
export async function declareTopology(ch: Channel, names: QueueNames): Promise<void> {
  await _assertQueue(ch, deadLetterQueue(names.taskQueue), _durable(names.queueType));
  await _assertQueue(ch, names.resultQueue, _durable(names.queueType));
  await ch.assertExchange(repliesExchange(names.resultQueue), "direct", { durable: true });
  await ch.assertExchange(controlExchange(names.taskQueue), "fanout", { durable: true });
  await ch.assertQueue(cancelStream(names.taskQueue), {
    durable: true,
    arguments: {
      "x-queue-type": "stream",
      "x-max-age": `${Math.ceil(CANCEL_MEMORY_MS / 3_600_000)}h`,
      // Age retention drops whole segments: small ones keep the stream close to its age limit.
      "x-stream-max-segment-size-bytes": CANCEL_SEGMENT_BYTES,
    },
  });
  await ch.bindQueue(cancelStream(names.taskQueue), controlExchange(names.taskQueue), "");
  await ch.assertExchange(heartbeatExchange(names.resultQueue), "fanout", { durable: true });
}

/** Declares the result queue alone (what a results consumer needs); idempotent. */
export async function declareResultQueue(ch: Channel, names: QueueNames): Promise<void> {
  await _assertQueue(ch, names.resultQueue, _durable(names.queueType));
}

/** Declares the queue of each task type; idempotent. Returns the queue names, in the order of `types`. */
export async function declareTypeQueues(
  ch: Channel,
  options: { taskQueue: string; types: readonly string[]; queueType?: QueueType | undefined },
): Promise<string[]> {
  const queues: string[] = [];
  const quorum = options.queueType === "quorum";
  for (const type of options.types) {
    const queue = typeQueue(options.taskQueue, type);
    await _assertQueue(
      ch,
      queue,
      _durable(options.queueType, {
        ...(quorum ? { "x-delivery-limit": QUORUM_DELIVERY_LIMIT } : { "x-max-priority": 9 }),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": deadLetterQueue(options.taskQueue),
      }),
    );
    queues.push(queue);
  }
  return queues;
}

/** Declares the retry queue of a type's queue for one delay; returns its name. */
export async function declareRetryQueue(
  ch: Channel,
  options: { typeQueue: string; delayMs: number; queueType?: QueueType | undefined },
): Promise<string> {
  const queue = retryQueue(options.typeQueue, options.delayMs);
  await _assertQueue(
    ch,
    queue,
    _durable(options.queueType, {
      "x-message-ttl": options.delayMs,
      "x-dead-letter-exchange": "",
      "x-dead-letter-routing-key": options.typeQueue,
    }),
  );
  return queue;
}

/** The waits of the retry queues a worker with this `retryBaseMs` uses: doubled each attempt, capped. */
export function retryDelays(retryBaseMs: number): number[] {
  const delays: number[] = [];
  for (let ms = retryBaseMs; ms < MAX_RETRY_DELAY_MS; ms *= 2) delays.push(ms);
  delays.push(MAX_RETRY_DELAY_MS);
  return delays;
}

/**
 * Deletes a topology's queues and exchanges, whatever they hold: for tests and for operators retiring a
 * deployment. It deletes `T.<type>` for each of `types` with their retry queues for the default backoff
 * (`retryDelays(1000)`), `T` (no longer used for tasks, deleted in case an older version left it), `T.dlq`,
 * `T.control.cancels`, `R`, and the exchanges `R.replies`, `T.control` and `R.heartbeats`. It leaves the queues of types not
 * listed, retry queues of other delays (delete them with {@linkcode deleteQueues}), and the per-server reply
 * queues, which expire on their own.
 */
export async function deleteTopology(
  url: string,
  names: QueueNames,
  types: readonly string[],
): Promise<void> {
  const queues = [
    names.taskQueue,
    deadLetterQueue(names.taskQueue),
    cancelStream(names.taskQueue),
    names.resultQueue,
  ];
  for (const type of types) {
    const queue = typeQueue(names.taskQueue, type);
    queues.push(queue, ...retryDelays(1_000).map((ms) => retryQueue(queue, ms)));
  }
  const conn = await amqp.connect(url, { noDelay: true });
  try {
    conn.on("error", () => {});
    const ch = await conn.createChannel();
    for (const queue of queues) await ch.deleteQueue(queue);
    await ch.deleteExchange(repliesExchange(names.resultQueue));
    await ch.deleteExchange(controlExchange(names.taskQueue));
    await ch.deleteExchange(heartbeatExchange(names.resultQueue));
  } finally {
    await conn.close().catch(() => {});
  }
}

/** Deletes queues by name, whatever they hold; a queue that does not exist is no error. */
export async function deleteQueues(url: string, queues: readonly string[]): Promise<void> {
  const conn = await amqp.connect(url, { noDelay: true });
  try {
    conn.on("error", () => {});
    const ch = await conn.createChannel();
    for (const queue of queues) await ch.deleteQueue(queue);
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

/** How many tasks wait in the queues of these types right now, all told; a missing queue counts 0. */
export async function typeQueuesDepth(
  url: string,
  options: { taskQueue: string; types: readonly string[] },
): Promise<number> {
  let total = 0;
  for (const type of options.types) {
    total += (await queueDepth(url, typeQueue(options.taskQueue, type))) ?? 0;
  }
  return total;
}
