/**
 * The server's counters: what it has done since it started. Each module of the server counts its own part.
 *
 * @module
 */

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
  };
}
