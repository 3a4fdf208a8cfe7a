/**
 * Small statistics and number formatting for the benchmark: percentiles, medians, Spanish numbers.
 *
 * @module
 */

/** Latency percentiles of one round, in milliseconds. */
export interface LatencySummary {
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentile of an ascending array; `NaN` when it is empty. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Summarises the first `count` latencies of `samples` (which it sorts in place). */
export function summarizeLatencies(samples: Float64Array, count: number): LatencySummary {
  const sorted = samples.subarray(0, count).sort();
  return {
    p50Ms: percentile(sorted, 50),
    p95Ms: percentile(sorted, 95),
    p99Ms: percentile(sorted, 99),
    maxMs: percentile(sorted, 100),
  };
}

/** Median of the values; the mean of the middle two for an even count, `NaN` for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const formats = new Map<number, Intl.NumberFormat>();

/** Formats a number the Spanish way (`12.345,6`); `—` for a non-finite value. */
export function formatNumber(value: number, decimals = 0): string {
  if (!Number.isFinite(value)) return "—";
  let format = formats.get(decimals);
  if (format === undefined) {
    format = new Intl.NumberFormat("es-ES", {
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
      useGrouping: "always",
    });
    formats.set(decimals, format);
  }
  return format.format(value);
}

/** Rounds to a fixed number of decimals, for machine-readable output. */
export function round(value: number, decimals = 3): number {
  const factor = 10 ** decimals;
  return Math.round(value * factor) / factor;
}

/** What one measured round of either side produced. */
export interface RoundResult {
  /** Tasks the round was to finish. */
  planned: number;
  /** Tasks that came back with a result, whatever its status. */
  completed: number;
  /** Results whose status was `failed`. */
  failed: number;
  /** Requests refused (`error` frames, nacked publishes) and results nobody was waiting for. */
  errors: number;
  /** From the first request to the last result, in milliseconds. */
  elapsedMs: number;
  /** Round-trip latencies in milliseconds; the first `latencyCount` are valid. */
  latencies: Float64Array;
  latencyCount: number;
  /**
   * Latencies in milliseconds until the task was acknowledged as stored: the `accepted` frame for colmena,
   * the publisher confirm for the raw baseline; the first `acceptCount` are valid.
   */
  acceptLatencies: Float64Array;
  acceptCount: number;
  /** Why the round ended before finishing, in Spanish; `null` when it finished. */
  problem: string | null;
}
