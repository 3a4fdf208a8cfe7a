/**
 * The BullMQ side's load generator: one `Queue` that adds jobs and one `QueueEvents` that observes their
 * completion, one round at a time. Also here: the `addBulk` measure, the Redis probe and the clean-up.
 *
 * Completion is observed with a single `QueueEvents` listener for `completed` and `failed`, the pattern
 * BullMQ's events guide gives for following every worker's jobs from one place. `job.waitUntilFinished`
 * registers two listeners per job on that same `QueueEvents` and is meant for waiting on one job; with
 * a thousand jobs in flight, one listener and a map from job id to send time is the cheaper way to see
 * the same events. A job is in flight from `Queue.add` until its `completed` event arrives; `add`
 * resolving (the job stored in Redis) is the side's "accepted".
 *
 * bench/ is, on purpose, the one place that imports bullmq and ioredis.
 *
 * @module
 */
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import type { RoundResult } from "./stats.ts";

/** Options of {@linkcode BullmqPublisher.run}. */
export interface BullmqRoundOptions {
  /** Jobs in the round. */
  tasks: number;
  /** Jobs added and not completed yet, at most. */
  inFlight: number;
  /** Encoded task specs, cycled through; each job's data is one of them, parsed. */
  taskSpecs: readonly string[];
  /** The round gives up after this long. */
  timeoutMs: number;
}

/** One round in progress. */
interface _Round {
  readonly prefix: string;
  onDone(seq: number, ok: boolean, now: number): void;
  fail(problem: string): void;
}

/** Every job's options: completed jobs leave Redis at once, as a throughput-minded deployment would set. */
const JOB_OPTIONS = { removeOnComplete: true, removeOnFail: true } as const;

/** Adds jobs and follows their completion on one queue, one round at a time. */
export class BullmqPublisher {
  readonly #connections: Redis[];
  readonly #queue: Queue;
  readonly #events: QueueEvents;
  #round: _Round | undefined;
  #rounds = 0;

  private constructor(connections: Redis[], queue: Queue, events: QueueEvents) {
    this.#connections = connections;
    this.#queue = queue;
    this.#events = events;
  }

  /** Connects the queue and its events reader, and waits until both are ready. */
  static async open(url: string, queueName: string): Promise<BullmqPublisher> {
    // QueueEvents blocks on its connection (XREAD BLOCK), so it gets its own.
    const connections = [0, 1].map(() => {
      const connection = new Redis(url, { maxRetriesPerRequest: null });
      connection.on("error", () => {});
      return connection;
    });
    const queue = new Queue(queueName, { connection: connections[0]! });
    // The queue is new: reading its event stream from the start loses no event that lands before the
    // reader's first XREAD (from "$", the default, the first completions of the warm-up went missing).
    const events = new QueueEvents(queueName, { connection: connections[1]!, lastEventId: "0-0" });
    const publisher = new BullmqPublisher(connections, queue, events);
    queue.on("error", (err: Error) => publisher.#round?.fail(`Redis: ${err.message}`));
    events.on("error", (err: Error) => publisher.#round?.fail(`Redis: ${err.message}`));
    events.on("completed", ({ jobId }) => publisher.#onDone(jobId, true));
    events.on("failed", ({ jobId }) => publisher.#onDone(jobId, false));
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    return publisher;
  }

  #onDone(jobId: string, ok: boolean): void {
    const now = performance.now();
    const round = this.#round;
    const dash = jobId.lastIndexOf("-");
    if (round === undefined || jobId.slice(0, dash + 1) !== round.prefix) return;
    round.onDone(Number(jobId.slice(dash + 1)), ok, now);
  }

  /** Runs one round and returns what it measured. */
  run(options: BullmqRoundOptions): Promise<RoundResult> {
    if (this.#round !== undefined) throw new TypeError("Cannot run a round: one is in progress");
    if (options.tasks === 0) throw new RangeError("Cannot run a round of 0 tasks");
    // Custom job ids may not be integers; the round's prefix tells its events from a late one's.
    const prefix = `r${(++this.#rounds).toString(36)}-`;
    const payloads = options.taskSpecs.map((spec) => JSON.parse(spec) as unknown);
    const sentAt = new Float64Array(options.tasks);
    const seen = new Uint8Array(options.tasks);
    const latencies = new Float64Array(options.tasks);
    const acceptLatencies = new Float64Array(options.tasks);
    const { promise, resolve } = Promise.withResolvers<RoundResult>();
    let acceptCount = 0;
    let latencyCount = 0;
    let failed = 0;
    let errors = 0;
    let sent = 0;
    let done = 0;
    let lastResultAt = 0;
    let start = 0;

    const finish = (problem: string | null): void => {
      if (this.#round !== round) return;
      this.#round = undefined;
      clearTimeout(timer);
      resolve({
        planned: options.tasks,
        completed: latencyCount,
        failed,
        errors,
        elapsedMs: (lastResultAt || performance.now()) - start,
        latencies,
        latencyCount,
        acceptLatencies,
        acceptCount,
        problem,
      });
    };
    const settleOne = (): void => {
      done++;
      if (done === options.tasks) finish(null);
      else if (sent < options.tasks) add();
    };
    const add = (): void => {
      const seq = sent++;
      sentAt[seq] = performance.now();
      const data = payloads[seq % payloads.length];
      this.#queue.add("bench", data, { ...JOB_OPTIONS, jobId: `${prefix}${seq}` }).then(
        () => {
          if (this.#round === round) {
            acceptLatencies[acceptCount++] = performance.now() - sentAt[seq]!;
          }
        },
        () => {
          if (this.#round !== round) return;
          errors++;
          settleOne();
        },
      );
    };
    const round: _Round = {
      prefix,
      onDone: (seq, ok, now) => {
        if (!(seq >= 0 && seq < sent) || seen[seq] === 1) {
          errors++;
          return;
        }
        seen[seq] = 1;
        if (ok) {
          latencies[latencyCount++] = now - sentAt[seq]!;
          lastResultAt = now;
        } else {
          failed++;
        }
        settleOne();
      },
      fail: (problem) => finish(problem),
    };
    this.#round = round;
    const timer = setTimeout(
      () => finish("se alcanzó el tiempo límite de la ronda"),
      options.timeoutMs,
    );
    start = performance.now();
    const first = Math.min(options.inFlight, options.tasks);
    for (let i = 0; i < first && this.#round === round; i++) add();
    return promise;
  }

  /** Closes the queue, its events reader and their connection; a round in progress is abandoned. */
  async close(): Promise<void> {
    this.#round?.fail("el publicador se cerró");
    await Promise.allSettled([this.#events.close(), this.#queue.close()]);
    for (const connection of this.#connections) connection.disconnect();
  }
}

/** Splits `total` into bulk sizes of at most `bulk`: `bulkSizes(2500, 1000)` is `[1000, 1000, 500]`. */
export function bulkSizes(total: number, bulk: number): number[] {
  if (!Number.isInteger(total) || total < 0 || !Number.isInteger(bulk) || bulk < 1) {
    throw new RangeError(`Cannot split ${total} jobs into bulks of ${bulk}`);
  }
  const sizes: number[] = [];
  for (let left = total; left > 0; left -= bulk) sizes.push(Math.min(bulk, left));
  return sizes;
}

/**
 * Adds `tasks` jobs to `queueName` with `Queue.addBulk`, `bulk` at a time and one call after another,
 * from one client with no worker; returns the elapsed milliseconds.
 */
export async function measureAddBulk(
  url: string,
  options: { queueName: string; tasks: number; bulk: number; taskSpecs: readonly string[] },
): Promise<number> {
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  connection.on("error", () => {});
  const queue = new Queue(options.queueName, { connection });
  try {
    await queue.waitUntilReady();
    const payloads = options.taskSpecs.map((spec) => JSON.parse(spec) as unknown);
    const start = performance.now();
    let seq = 0;
    for (const size of bulkSizes(options.tasks, options.bulk)) {
      const jobs = [];
      for (let i = 0; i < size; i++, seq++) {
        jobs.push({ name: "bench", data: payloads[seq % payloads.length], opts: JOB_OPTIONS });
      }
      await queue.addBulk(jobs);
    }
    return performance.now() - start;
  } finally {
    await queue.close().catch(() => {});
    connection.disconnect();
  }
}

/** Connects once and asks Redis its version; throws when Redis cannot be reached within `timeoutMs`. */
export async function readRedisVersion(url: string, timeoutMs: number): Promise<string> {
  const connection = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let lastError: Error | undefined;
  connection.on("error", (err: Error) => lastError = err);
  try {
    await connection.connect();
    const info = await connection.info("server");
    return info.match(/^redis_version:(\S+)/m)?.[1] ?? "desconocida";
  } catch (err) {
    throw lastError ?? err;
  } finally {
    connection.disconnect();
  }
}

/**
 * Removes every Redis key of the given queues (`Queue.obliterate` with `force`); returns the names of the
 * queues that could not be removed.
 */
export async function obliterateQueues(url: string, names: readonly string[]): Promise<string[]> {
  const failed: string[] = [];
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  connection.on("error", () => {});
  try {
    for (const name of names) {
      const queue = new Queue(name, { connection });
      try {
        await queue.obliterate({ force: true });
      } catch {
        failed.push(name);
      } finally {
        await queue.close().catch(() => {});
      }
    }
  } finally {
    connection.disconnect();
  }
  return failed;
}
