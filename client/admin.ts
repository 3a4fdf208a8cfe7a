/**
 * Pure parts of `workers` and `dlq`: the table of live workers, the table of dead-lettered tasks, and the
 * page size of `dlq`.
 *
 * @module
 */
import { LIMITE_TAKES } from "../shared/config.ts";
import { isTaskType } from "../shared/tasks.ts";
import { type Parsed, TASK_TYPE_LABELS } from "./args.ts";
import { formatAgo, formatTable, formatTime, truncate } from "./format.ts";
import type { DeadLetterInfo, WorkerInfo } from "./task_client.ts";

/** Entries `dlq listar` shows, and tasks `dlq reintentar` moves, unless `--limite` says otherwise. */
export const DEFAULT_DLQ_LIMIT = 20;
/** The largest `--limite` of `dlq`, as the server accepts it. */
export const MAX_DLQ_LIMIT = 1_000;

/** The table of `workers`: one row per worker, with how long ago it was last heard from. */
export function formatWorkers(workers: readonly WorkerInfo[], now: number): string {
  return formatTable(
    [
      "nombre",
      "host",
      "pid",
      "concurrencia",
      "en curso",
      "procesadas",
      "fallidas",
      "visto",
      "estado",
      "tipos",
    ],
    workers.map((w) => [
      truncate(w.worker, 30),
      truncate(w.host, 30),
      String(w.pid),
      String(w.concurrency),
      String(w.inProgress),
      String(w.processed),
      String(w.failed),
      formatAgo(w.lastSeen, now),
      w.stopping ? "apagándose" : "activo",
      truncate(w.types.join(","), 60),
    ]),
    {
      align: ["left", "left", "right", "right", "right", "right", "right", "right", "left", "left"],
    },
  );
}

/** The table of `dlq listar`: full ids (for `dlq reintentar`), attempts, the last error and when. */
export function formatDeadLetters(entries: readonly DeadLetterInfo[]): string {
  return formatTable(
    ["id", "tipo", "intentos", "error", "cuándo"],
    entries.map((e) => [
      e.taskId,
      truncate(isTaskType(e.taskType) ? TASK_TYPE_LABELS[e.taskType] : e.taskType, 20),
      `${e.attempt}/${e.maxAttempts}`,
      e.error === null ? "—" : truncate(`${e.error.code}: ${e.error.message}`, 90),
      e.deadAt === null ? "—" : formatTime(e.deadAt),
    ]),
    { align: ["left", "left", "right", "left", "left"] },
  );
}

/** The page size of `dlq`: `--limite`, else `fallback`; at most 1000. */
export function dlqLimit(limite: number | undefined, fallback: number): Parsed<number> {
  const value = limite ?? fallback;
  if (!Number.isSafeInteger(value) || value < 1 || value > MAX_DLQ_LIMIT) {
    return {
      ok: false,
      message: `--limite debe ser ${LIMITE_TAKES}, no «${value}»`,
    };
  }
  return { ok: true, value };
}
