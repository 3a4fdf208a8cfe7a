/**
 * The workers this server has heard from: their heartbeats, and the `workers` request that lists them.
 *
 * A worker is one process, keyed by name, host and pid, so two workers started with the same name are two
 * entries: both are listed, flagged `duplicate`, and the server warns once. A worker whose heartbeat says
 * `stopped` (its last, after draining) is forgotten at once.
 *
 * @module
 */
import * as log from "../shared/log.ts";
import type { Reply, Request } from "../shared/protocol.ts";
import type { Heartbeat } from "../shared/queue_messages.ts";
import type { ClientConnection } from "./connection.ts";

/** Heartbeats older than this make a worker count as gone. */
const WORKER_ALIVE_MS = 15_000;

type Heard = Heartbeat & { lastSeen: number };

/** A worker alive now, as `workers` answers and the dashboard shows it. */
export type WorkerView = Extract<Reply, { type: "workers" }>["workers"][number];

function _key(hb: Heartbeat): string {
  return `${hb.worker}@${hb.host}:${hb.pid}`;
}

/** The last heartbeat of each worker; one silent for four times the liveness window is forgotten. */
export class WorkerRegistry {
  readonly #workers = new Map<string, Heard>();
  /** Worker processes already warned about as sharing their name with another. */
  readonly #warned = new Set<string>();

  /** Notes a worker's heartbeat; its last one (`stopped`) removes it. */
  heard(hb: Heartbeat): void {
    const key = _key(hb);
    if (hb.stopped) {
      this.#workers.delete(key);
      this.#warned.delete(key);
      return;
    }
    const now = Date.now();
    this.#workers.set(key, { ...hb, lastSeen: now });
    if (this.#warned.has(key)) return;
    const twins = this.#alive(now).filter((w) => w.worker === hb.worker && _key(w) !== key);
    if (twins.length > 0) {
      this.#warned.add(key);
      log.warn(
        `Hay más de un worker llamado «${hb.worker}»: ${hb.host}:${hb.pid} y ${
          twins.map((w) => `${w.host}:${w.pid}`).join(", ")
        }; use nombres distintos para distinguirlos`,
      );
    }
  }

  #alive(now: number): Heard[] {
    const alive: Heard[] = [];
    for (const [key, w] of this.#workers) {
      if (now - w.lastSeen > 4 * WORKER_ALIVE_MS) {
        this.#workers.delete(key);
        this.#warned.delete(key);
      } else if (now - w.lastSeen <= WORKER_ALIVE_MS) alive.push(w);
    }
    return alive;
  }

  /**
   * The most tasks of `type` one broker message may carry, so that a batch never holds more than a quarter
   * of the concurrency of any worker that may take it: max(1, floor(c / 4)) for the smallest concurrency `c`
   * among the live workers that run `type` (and are not stopping). 1 when no such worker is known, or when
   * one of them cannot read batch messages.
   */
  batchLimit(type: string): number {
    let smallest = Infinity;
    for (const w of this.#alive(Date.now())) {
      if (w.stopping || (w.types.length > 0 && !w.types.includes(type))) continue;
      if (!w.batches) return 1;
      smallest = Math.min(smallest, w.concurrency);
    }
    return smallest === Infinity ? 1 : Math.max(1, Math.floor(smallest / 4));
  }

  /**
   * The most tasks of `type` one bulk message (a `submit_many`'s) may carry: no cap of its own while every
   * live worker that runs `type` shares out a bulk larger than its fair share (see `BULK_HEADER`), or none
   * is known; the fairness cap ({@linkcode batchLimit}) while one of them is older than bulks, and 1 while
   * one cannot read batch messages.
   */
  bulkLimit(type: string): number {
    for (const w of this.#alive(Date.now())) {
      if (w.stopping || (w.types.length > 0 && !w.types.includes(type))) continue;
      if (!w.batches || !w.bulks) return this.batchLimit(type);
    }
    return Infinity;
  }

  /** How many workers are alive now (heard within the liveness window). */
  aliveCount(): number {
    return this.#alive(Date.now()).length;
  }

  /** Answers `workers` with the workers alive now, by name. */
  list(client: ClientConnection, request: Extract<Request, { type: "workers" }>): void {
    client.send({ type: "workers", id: request.id, workers: this.alive() });
  }

  /** The workers alive now, sorted by name then pid; twins sharing a name are flagged `duplicate`. */
  alive(): WorkerView[] {
    const alive = this.#alive(Date.now());
    const names = new Map<string, number>();
    for (const w of alive) names.set(w.worker, (names.get(w.worker) ?? 0) + 1);
    const workers = alive.map((w) => ({
      worker: w.worker,
      host: w.host,
      pid: w.pid,
      concurrency: w.concurrency,
      inProgress: w.inProgress,
      processed: w.processed,
      failed: w.failed,
      startedAt: w.startedAt,
      lastSeen: new Date(w.lastSeen).toISOString(),
      stopping: w.stopping,
      types: w.types,
      ...((names.get(w.worker) ?? 0) > 1 ? { duplicate: true as const } : {}),
    }));
    workers.sort((a, b) => a.worker.localeCompare(b.worker) || a.pid - b.pid);
    return workers;
  }
}
