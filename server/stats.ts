/**
 * The server's counters: what it has done since it started. Each module of the server counts its own part;
 * the HTTP listener (`http.ts`) reads them all from here for `/metrics`.
 *
 * @module
 */

/** What happened to a task, as counted by type: its submit's fate, then its result's. */
export type TaskOutcome =
  | "submitted"
  | "accepted"
  | "rejected"
  | "succeeded"
  | "failed"
  | "cancelled";

/** Every {@linkcode TaskOutcome}, in the order `/metrics` shows them. */
export const TASK_OUTCOMES: readonly TaskOutcome[] = [
  "submitted",
  "accepted",
  "rejected",
  "succeeded",
  "failed",
  "cancelled",
];

/** Upper bounds, in seconds, of the submit→result latency buckets (a fixed set: no per-task allocation). */
export const LATENCY_BUCKETS_S: readonly number[] = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
];

/** A latency histogram of one task type: counts per bucket (not cumulative), then the sum and count. */
export interface LatencyHistogram {
  /** One count per bound of {@linkcode LATENCY_BUCKETS_S}, plus the last for `+Inf`. */
  readonly buckets: number[];
  sum: number;
  count: number;
}

/** Counters that describe the server's work so far. */
export interface ServerStats {
  /** Connections taken (not those dropped at once for `OVERLOADED` or `SHUTTING_DOWN`). */
  connections: number;
  /** Submits answered `accepted` that created a task. */
  accepted: number;
  /** Submits whose publish failed for good. */
  rejected: number;
  /** First results recorded. */
  results: number;
  /** Results already recorded that came again. */
  duplicates: number;
  /** Results forwarded to the server that accepted their task. */
  forwarded: number;
  /** Publishes that succeeded only after a lost confirm and a reconnect. */
  republished: number;
  /**
   * Tasks by outcome and type: `submitted` (a valid submit of a known type reached the publish step),
   * `accepted`, `rejected`, then the first result of each task recorded by this server (`succeeded`,
   * `failed`) and cancels of queued tasks answered here (`cancelled`).
   */
  readonly tasks: Record<TaskOutcome, Map<string, number>>;
  /** Seconds from a submit to its result, by type, for tasks submitted and answered by this server. */
  readonly latency: Map<string, LatencyHistogram>;
  /** Submits answered `accepted` that created a task, by the kind of client that sent them. */
  readonly acceptedByKind: Map<string, number>;
}

/** Counters at zero. */
export function newServerStats(): ServerStats {
  return {
    connections: 0,
    accepted: 0,
    rejected: 0,
    results: 0,
    duplicates: 0,
    forwarded: 0,
    republished: 0,
    tasks: {
      submitted: new Map(),
      accepted: new Map(),
      rejected: new Map(),
      succeeded: new Map(),
      failed: new Map(),
      cancelled: new Map(),
    },
    latency: new Map(),
    acceptedByKind: new Map(),
  };
}

/** Counts one task of `taskType` under `outcome`. */
export function countTask(stats: ServerStats, outcome: TaskOutcome, taskType: string): void {
  const counts = stats.tasks[outcome];
  counts.set(taskType, (counts.get(taskType) ?? 0) + 1);
}

/** Adds one submit→result latency, in seconds, to the histogram of `taskType`. */
export function observeLatency(stats: ServerStats, taskType: string, seconds: number): void {
  let histogram = stats.latency.get(taskType);
  if (histogram === undefined) {
    histogram = { buckets: Array(LATENCY_BUCKETS_S.length + 1).fill(0), sum: 0, count: 0 };
    stats.latency.set(taskType, histogram);
  }
  let i = 0;
  while (i < LATENCY_BUCKETS_S.length && seconds > LATENCY_BUCKETS_S[i]!) i++;
  histogram.buckets[i]!++;
  histogram.sum += seconds;
  histogram.count++;
}

/** Counts one task accepted from a client of `kind`. */
export function countAcceptedKind(stats: ServerStats, kind: string): void {
  stats.acceptedByKind.set(kind, (stats.acceptedByKind.get(kind) ?? 0) + 1);
}
