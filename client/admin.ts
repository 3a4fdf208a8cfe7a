/**
 * Pure parts of `workers` and `dlq`: the table of live workers, the table of dead-lettered tasks, and the
 * page size of `dlq`.
 *
 * @module
 */
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import { type Parsed, taskLabel } from "./args.ts";
import {
  formatAgo,
  formatError,
  formatNumber,
  formatTable,
  formatTime,
  truncate,
} from "./format.ts";
import { LIMITE_TAKES } from "../shared/config.ts";
import type { DeadLetterInfo, WorkerInfo } from "./task_client.ts";

/** Entries `dlq listar` shows, and tasks `dlq reintentar` moves, unless `--limite` says otherwise. */
export const DEFAULT_DLQ_LIMIT = 20;
/** The largest `--limite` of `dlq`, as the server accepts it. */
export const MAX_DLQ_LIMIT = 1_000;

/**
 * The table of `workers`: one row per worker, with how long ago it was last heard from; the task types it
 * runs go by their Spanish label from `catalog`.
 */
export function formatWorkers(
  workers: readonly WorkerInfo[],
  now: number,
  catalog: TaskCatalog = BUILTIN_CATALOG,
): string {
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
      formatNumber(w.concurrency),
      formatNumber(w.inProgress),
      formatNumber(w.processed),
      formatNumber(w.failed),
      formatAgo(w.lastSeen, now),
      w.stopping ? "apagándose" : "activo",
      truncate(w.types.map((type) => taskLabel(type, catalog)).join(","), 60),
    ]),
    {
      align: ["left", "left", "right", "right", "right", "right", "right", "right", "left", "left"],
    },
  );
}

/**
 * The table of `dlq listar`: full ids (for `dlq reintentar`), the type's Spanish label from `catalog`,
 * attempts, the last error and when.
 */
export function formatDeadLetters(
  entries: readonly DeadLetterInfo[],
  catalog: TaskCatalog = BUILTIN_CATALOG,
): string {
  return formatTable(
    ["id", "tipo", "intentos", "error", "cuándo"],
    entries.map((e) => [
      e.taskId,
      truncate(taskLabel(e.taskType, catalog), 20),
      `${e.attempt}/${e.maxAttempts}`,
      e.error === null ? "—" : truncate(formatError(e.error), 90),
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
