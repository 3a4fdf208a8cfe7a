/**
 * Statistics of a simulation: percentiles, and the summary built from every simulated task.
 *
 * @module
 */
import type { ClientKind } from "../shared/protocol.ts";

/** The error code a simulated task gets when its result does not match what was sent. */
export const MISMATCH = "MISMATCH";

/** What happened to one simulated task. */
export interface SimulatedTask {
  /** Name of the simulated client that sent it. */
  readonly client: string;
  /** Kind of that client. */
  readonly kind: ClientKind;
  /** Task type. */
  readonly type: string;
  /** Task id, when the server accepted it. */
  readonly taskId: string | null;
  /** Worker that ran it, when a result came. */
  readonly worker: string | null;
  /** Milliseconds from submit to result, when a result came. */
  readonly latencyMs: number | null;
  /** Whether it succeeded and its output matched the input. */
  readonly ok: boolean;
  /** Why it failed: a wire error code or {@linkcode MISMATCH}, with a Spanish message. */
  readonly error: { readonly code: string; readonly message: string } | null;
}

/** Latency percentiles in milliseconds; all zero when `count` is zero. */
export interface LatencyStats {
  readonly count: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** Counts and latency of one group of tasks (one task type, client kind or worker). */
export interface GroupStats {
  readonly count: number;
  readonly ok: number;
  /** Tasks that failed (errors, failed results, mismatches); cancelled ones are not among them. */
  readonly failed: number;
  /** Tasks cancelled before they ran (code `CANCELLED`). */
  readonly cancelled: number;
  readonly latency: LatencyStats;
}

/** The outcome of a simulation, as `simular --json` prints it. */
export interface SimulationSummary {
  /** Simulated clients that sent tasks. */
  readonly clients: number;
  /** Client kinds used, round-robin. */
  readonly kinds: readonly ClientKind[];
  /** Task types used. */
  readonly types: readonly string[];
  /** Tasks each client kept in flight. */
  readonly window: number;
  /** Tasks that ended (all of them, unless `interrupted`). */
  readonly total: number;
  /** Tasks the simulation was asked to run. */
  readonly planned: number;
  /** Whether it was stopped (Ctrl-C) before every task ended: the counts are then partial. */
  readonly interrupted: boolean;
  readonly ok: number;
  /** Tasks that failed; cancelled ones are counted apart. */
  readonly failed: number;
  /** Tasks cancelled before they ran. */
  readonly cancelled: number;
  /** Failed tasks whose output did not match their input. */
  readonly mismatches: number;
  /** Failed and cancelled tasks by error code ({@linkcode MISMATCH} and `CANCELLED` included). */
  readonly errors: Readonly<Record<string, number>>;
  /** The first few mismatches: the task, and what did not match (Spanish). */
  readonly mismatchExamples: readonly MismatchExample[];
  /** Milliseconds spent opening the connections. */
  readonly connectMs: number;
  /** Milliseconds from the first submit to the last result. */
  readonly elapsedMs: number;
  readonly tasksPerSecond: number;
  /** Submit → result latency of every task that got a result. */
  readonly latency: LatencyStats;
  readonly byType: Readonly<Record<string, GroupStats>>;
  readonly byKind: Readonly<Record<string, GroupStats>>;
  readonly byWorker: Readonly<Record<string, GroupStats>>;
}

/** One output that did not match its input. */
export interface MismatchExample {
  readonly taskType: string;
  readonly taskId: string | null;
  readonly message: string;
}

/** What a summary needs besides the tasks themselves. */
export interface SummaryContext {
  /** Tasks the simulation was asked to run. @defaultValue the tasks that ended */
  readonly planned?: number;
  /** Whether the simulation was stopped before every task ended. @defaultValue `false` */
  readonly interrupted?: boolean;
  readonly clients: number;
  readonly kinds: readonly ClientKind[];
  readonly types: readonly string[];
  readonly window: number;
  readonly connectMs: number;
  readonly elapsedMs: number;
}

const MAX_MISMATCH_EXAMPLES = 5;

/** The nearest-rank `p`-th percentile (0–100) of ascending `sorted` values; 0 when there are none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  const index = Math.min(sorted.length - 1, Math.max(0, rank - 1));
  return sorted[index] ?? 0;
}

function _round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** Percentiles, maximum and mean of some latencies, in any order. */
export function latencyStats(values: readonly number[]): LatencyStats {
  if (values.length === 0) return { count: 0, p50: 0, p95: 0, p99: 0, max: 0, mean: 0 };
  const sorted = Float64Array.from(values).sort();
  const list = Array.from(sorted);
  let sum = 0;
  for (const value of list) sum += value;
  return {
    count: list.length,
    p50: _round(percentile(list, 50)),
    p95: _round(percentile(list, 95)),
    p99: _round(percentile(list, 99)),
    max: _round(list[list.length - 1] ?? 0),
    mean: _round(sum / list.length),
  };
}

/** Whether a simulated task ended cancelled rather than failed. */
function _isCancelled(task: SimulatedTask): boolean {
  return !task.ok && task.error?.code === "CANCELLED";
}

class _Group {
  count = 0;
  ok = 0;
  cancelled = 0;
  readonly latencies: number[] = [];

  add(task: SimulatedTask): void {
    this.count++;
    if (task.ok) this.ok++;
    if (_isCancelled(task)) this.cancelled++;
    if (task.latencyMs !== null) this.latencies.push(task.latencyMs);
  }

  stats(): GroupStats {
    return {
      count: this.count,
      ok: this.ok,
      failed: this.count - this.ok - this.cancelled,
      cancelled: this.cancelled,
      latency: latencyStats(this.latencies),
    };
  }
}

/** Each group's stats, keys in `order` first, then the rest alphabetically. */
function _statsOf(
  groups: Map<string, _Group>,
  order: readonly string[] = [],
): Record<string, GroupStats> {
  const rank = (key: string): number => {
    const index = order.indexOf(key);
    return index === -1 ? order.length : index;
  };
  const keys = [...groups.keys()].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  const out: Record<string, GroupStats> = {};
  for (const key of keys) out[key] = groups.get(key)!.stats();
  return out;
}

/** Collects simulated tasks one by one and builds the {@linkcode SimulationSummary}. */
export class SimulationStats {
  readonly #all = new _Group();
  readonly #byType = new Map<string, _Group>();
  readonly #byKind = new Map<string, _Group>();
  readonly #byWorker = new Map<string, _Group>();
  readonly #errors = new Map<string, number>();
  readonly #mismatchExamples: MismatchExample[] = [];

  /** Tasks collected so far. */
  get done(): number {
    return this.#all.count;
  }

  /** Failed tasks collected so far (cancelled ones apart). */
  get failed(): number {
    return this.#all.count - this.#all.ok - this.#all.cancelled;
  }

  /** Cancelled tasks collected so far. */
  get cancelled(): number {
    return this.#all.cancelled;
  }

  /** Adds one finished task. */
  add(task: SimulatedTask): void {
    this.#all.add(task);
    _groupOf(this.#byType, task.type).add(task);
    _groupOf(this.#byKind, task.kind).add(task);
    if (task.worker !== null) _groupOf(this.#byWorker, task.worker).add(task);
    if (task.error !== null) {
      this.#errors.set(task.error.code, (this.#errors.get(task.error.code) ?? 0) + 1);
      if (task.error.code === MISMATCH && this.#mismatchExamples.length < MAX_MISMATCH_EXAMPLES) {
        this.#mismatchExamples.push({
          taskType: task.type,
          taskId: task.taskId,
          message: task.error.message,
        });
      }
    }
  }

  /** The summary of everything collected. */
  summarize(context: SummaryContext): SimulationSummary {
    const all = this.#all.stats();
    const errors: Record<string, number> = {};
    for (const code of [...this.#errors.keys()].sort()) errors[code] = this.#errors.get(code)!;
    return {
      clients: context.clients,
      kinds: [...context.kinds],
      types: [...context.types],
      window: context.window,
      total: all.count,
      planned: context.planned ?? all.count,
      interrupted: context.interrupted ?? false,
      ok: all.ok,
      failed: all.failed,
      cancelled: all.cancelled,
      mismatches: this.#errors.get(MISMATCH) ?? 0,
      errors,
      mismatchExamples: [...this.#mismatchExamples],
      connectMs: _round(context.connectMs),
      elapsedMs: _round(context.elapsedMs),
      tasksPerSecond: context.elapsedMs > 0 ? _round(all.count / (context.elapsedMs / 1000)) : 0,
      latency: all.latency,
      byType: _statsOf(this.#byType, context.types),
      byKind: _statsOf(this.#byKind, context.kinds),
      byWorker: _statsOf(this.#byWorker),
    };
  }
}

function _groupOf(groups: Map<string, _Group>, key: string): _Group {
  let group = groups.get(key);
  if (group === undefined) {
    group = new _Group();
    groups.set(key, group);
  }
  return group;
}
