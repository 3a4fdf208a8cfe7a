/**
 * Pure parts of `historial`: state names, time bounds (ISO 8601 or `30m`, `1h`, `2d` ago), the list filter
 * built from the options, the page size, and the table of task records.
 *
 * @module
 */
import { LIMITE_TAKES } from "../shared/config.ts";
import { TASK_STATUSES, type TaskStatus, type TaskView } from "../shared/protocol.ts";
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import {
  CLIENT_KIND_LABELS,
  type Parsed,
  parseKinds,
  taskLabel,
  toClientKind,
  toTaskType,
} from "./args.ts";
import { formatMs, formatTable, formatTime, shortId, STATUS_LABELS, truncate } from "./format.ts";
import type { ListFilter } from "./task_client.ts";

/** Page size of `historial` unless `--limite` says otherwise. */
export const DEFAULT_HISTORY_LIMIT = 20;
/** Page size of `historial --todas` unless `--limite` says otherwise: the largest the server gives. */
export const ALL_PAGES_LIMIT = 500;
/** The largest page size the server accepts. */
export const MAX_HISTORY_LIMIT = 500;
/** The most pages `historial --todas` fetches before it stops and prints where to continue. */
export const MAX_HISTORY_PAGES = 100;

/** English, Spanish and plural names of each state, lower case, without accents, `-` for spaces. */
const STATUS_ALIASES: Readonly<Record<string, TaskStatus>> = {
  queued: "queued",
  "en-cola": "queued",
  cola: "queued",
  encolada: "queued",
  encoladas: "queued",
  running: "running",
  ejecutando: "running",
  "en-ejecucion": "running",
  ejecucion: "running",
  succeeded: "succeeded",
  completada: "succeeded",
  completadas: "succeeded",
  failed: "failed",
  fallida: "failed",
  fallidas: "failed",
  cancelled: "cancelled",
  canceled: "cancelled",
  cancelada: "cancelled",
  canceladas: "cancelled",
};

/** The state a name stands for (`fallida`, `en cola`, `running`…), if any. */
export function toTaskStatus(name: string): TaskStatus | undefined {
  const key = name.trim().toLowerCase().normalize("NFD").replace(/\p{Diacritic}/gu, "")
    .replace(/[\s_]+/g, "-");
  return Object.hasOwn(STATUS_ALIASES, key) ? STATUS_ALIASES[key] : undefined;
}

/** Parses a comma-separated list of states, Spanish or English (`fallida,cancelled`), without repeats. */
export function parseStatuses(text: string): Parsed<TaskStatus[]> {
  const names = text.split(",").map((name) => name.trim()).filter((name) => name !== "");
  const valid = `${
    TASK_STATUSES.join(", ")
  } (o en-cola, ejecutando, completada, fallida, cancelada)`;
  if (names.length === 0) return { ok: false, message: `Falta la lista de estados: ${valid}` };
  const statuses: TaskStatus[] = [];
  for (const name of names) {
    const status = toTaskStatus(name);
    if (status === undefined) {
      return { ok: false, message: `Estado desconocido: «${name}». Use ${valid}` };
    }
    if (!statuses.includes(status)) statuses.push(status);
  }
  return { ok: true, value: statuses };
}

const UNIT_MS: Readonly<Record<string, number>> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Milliseconds of a relative span such as `30m`, `1h`, `2d` or `1h30m` (units s, m, h, d), if `text` is
 * one.
 */
export function parseSpan(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  if (!/^(\d+[smhd])+$/.test(trimmed)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of trimmed.matchAll(/(\d+)([smhd])/g)) {
    ms += Number(amount) * (UNIT_MS[unit ?? ""] ?? NaN);
  }
  return Number.isSafeInteger(ms) ? ms : undefined;
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$/i;

/**
 * Parses a time bound: an ISO 8601 date or date-time (without a zone it is local time, as in JavaScript;
 * a bare date is midnight UTC), or a span that long before `now` (`30m`, `1h`, `2d`). Gives the ISO 8601
 * form in UTC, which is what the server takes.
 */
export function parseTimeBound(text: string, now: number): Parsed<string> {
  const trimmed = text.trim();
  const fail: Parsed<string> = {
    ok: false,
    message: `«${trimmed}» no es una fecha ISO 8601 (2025-11-26 o 2025-11-26T10:00:00Z) ` +
      "ni un tiempo atrás (30m, 1h, 2d, 1h30m)",
  };
  const span = parseSpan(trimmed);
  let ms: number;
  if (span !== undefined) ms = now - span;
  else if (ISO_DATE.test(trimmed)) ms = Date.parse(trimmed.replace(" ", "T"));
  else return fail;
  if (!Number.isFinite(ms) || ms < 0 || ms > 253_402_300_799_999) return fail;
  return { ok: true, value: new Date(ms).toISOString() };
}

/** The options of `historial` that filter, as the configuration holds them (all text, all optional). */
export interface HistoryOptions {
  readonly estado?: string | undefined;
  readonly tipoTarea?: string | undefined;
  readonly deTipo?: string | undefined;
  readonly desde?: string | undefined;
  readonly hasta?: string | undefined;
  /** The task types `tipoTarea` may name. @defaultValue the built-in ones */
  readonly catalog?: TaskCatalog | undefined;
}

/** Builds the list filter of `historial` from its options, or says what is wrong with them. */
export function buildListFilter(options: HistoryOptions, now: number): Parsed<ListFilter> {
  const filter: ListFilter = {};
  if (options.estado !== undefined) {
    const statuses = parseStatuses(options.estado);
    if (!statuses.ok) return statuses;
    filter.statuses = statuses.value;
  }
  if (options.tipoTarea !== undefined) {
    const catalog = options.catalog ?? BUILTIN_CATALOG;
    const type = toTaskType(options.tipoTarea, catalog);
    if (type === undefined) {
      const names = catalog.names().map((t) => taskLabel(t, catalog)).join(", ");
      return {
        ok: false,
        message: `Tipo de tarea desconocido: «${options.tipoTarea.trim()}». Use ${names}`,
      };
    }
    filter.taskType = type;
  }
  if (options.deTipo !== undefined) {
    const kind = toClientKind(options.deTipo);
    if (kind === undefined) {
      const parsed = parseKinds(options.deTipo);
      return {
        ok: false,
        message: parsed.ok
          ? `--de-tipo admite un solo tipo de cliente, no «${options.deTipo}»`
          : parsed.message,
      };
    }
    filter.clientKind = kind;
  }
  for (const key of ["desde", "hasta"] as const) {
    const text = options[key];
    if (text === undefined) continue;
    const bound = parseTimeBound(text, now);
    if (!bound.ok) return { ok: false, message: `--${key}: ${bound.message}` };
    if (key === "desde") filter.since = bound.value;
    else filter.until = bound.value;
  }
  if (filter.since !== undefined && filter.until !== undefined && filter.since >= filter.until) {
    return { ok: false, message: "--desde debe ser anterior a --hasta" };
  }
  return { ok: true, value: filter };
}

/** The page size of `historial`: `--limite`, else 20 (500 with `--todas`); at most 500. */
export function historyPageSize(limite: number | undefined, all: boolean): Parsed<number> {
  if (limite === undefined) {
    return { ok: true, value: all ? ALL_PAGES_LIMIT : DEFAULT_HISTORY_LIMIT };
  }
  if (!Number.isSafeInteger(limite) || limite < 1 || limite > MAX_HISTORY_LIMIT) {
    return {
      ok: false,
      message: `--limite debe ser ${LIMITE_TAKES}, no «${limite}»`,
    };
  }
  return { ok: true, value: limite };
}

/**
 * The table of `historial`: one row per task, in the order given (the server's: newest first); task types
 * go by their Spanish label from `catalog`.
 */
export function formatHistory(
  items: readonly TaskView[],
  catalog: TaskCatalog = BUILTIN_CATALOG,
): string {
  return formatTable(
    ["id", "tipo", "estado", "cliente", "enviada", "duración", "worker"],
    items.map((view) => [
      shortId(view.taskId),
      truncate(taskLabel(view.taskType, catalog), 20),
      STATUS_LABELS[view.status],
      truncate(`${CLIENT_KIND_LABELS[view.client.kind]}/${view.client.name}`, 30),
      formatTime(view.submittedAt),
      view.durationMs === undefined ? "—" : formatMs(view.durationMs),
      view.worker === undefined ? "—" : truncate(view.worker, 30),
    ]),
    { align: ["left", "left", "left", "left", "left", "right", "left"] },
  );
}
