/**
 * The workers this server has heard from: their heartbeats, and the `workers` request that lists them.
 *
 * @module
 */
import type { Request } from "../shared/protocol.ts";
import type { Heartbeat } from "../shared/queue_messages.ts";
import type { ClientConnection } from "./connection.ts";

/** Heartbeats older than this make a worker count as gone. */
const WORKER_ALIVE_MS = 15_000;

/** The last heartbeat of each worker; one silent for four times the liveness window is forgotten. */
export class WorkerRegistry {
  readonly #workers = new Map<string, Heartbeat & { lastSeen: number }>();

  /** Notes a worker's heartbeat. */
  heard(hb: Heartbeat): void {
    this.#workers.set(`${hb.worker}@${hb.host}:${hb.pid}`, { ...hb, lastSeen: Date.now() });
  }

  /** Answers `workers` with the workers alive now, by name. */
  list(client: ClientConnection, request: Extract<Request, { type: "workers" }>): void {
    const now = Date.now();
    const workers = [];
    for (const [key, w] of this.#workers) {
      if (now - w.lastSeen > 4 * WORKER_ALIVE_MS) this.#workers.delete(key);
      else if (now - w.lastSeen <= WORKER_ALIVE_MS) {
        workers.push({
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
        });
      }
    }
    workers.sort((a, b) => a.worker.localeCompare(b.worker));
    client.send({ type: "workers", id: request.id, workers });
  }
}
