/**
 * Spanish renderings of results, task records, errors and tables, for people; plain objects for `--json`.
 *
 * @module
 */
import type { ColmenaError } from "../shared/errors.ts";
import type { TaskStatus, TaskView } from "../shared/protocol.ts";
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import { TASKS } from "../shared/tasks.ts";
import { CLIENT_KIND_LABELS, taskLabel } from "./args.ts";
import { displayText } from "./display.ts";
import type { TaskResult } from "./task_client.ts";

/** The Spanish name of each task state, as `estado`, `historial` and the menu show it. */
export const STATUS_LABELS: Readonly<Record<TaskStatus, string>> = {
  queued: "en cola",
  running: "en ejecución",
  succeeded: "completada",
  failed: "fallida",
  cancelled: "cancelada",
};

/** Milliseconds for people: `0.42 ms`, `12.3 ms`, `1.53 s`. */
export function formatMs(ms: number): string {
  if (ms >= 10_000) return `${formatNumber(ms / 1000, 1)} s`;
  if (ms >= 1000) return `${formatNumber(ms / 1000, 2)} s`;
  if (ms >= 100) return `${formatNumber(ms, 0)} ms`;
  if (ms >= 10) return `${formatNumber(ms, 1)} ms`;
  return `${formatNumber(ms, 2)} ms`;
}

/**
 * How numbers read in every human output: plain, as JavaScript writes them and as people type them on the
 * command line (`.` for decimals, no thousands separators: `,` separates the numbers of `enviar numeros`).
 * `decimals` fixes the digits after the point.
 */
export function formatNumber(value: number, decimals?: number): string {
  return decimals === undefined ? String(value) : value.toFixed(decimals);
}

/** A share for people, with the space Spanish puts before `%`: `40 %`. */
export function formatPercent(fraction: number): string {
  return `${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)} %`;
}

/** A throughput for people, one decimal: `406.3 tareas/s`. */
export function formatRate(perSecond: number): string {
  return `${formatNumber(perSecond, 1)} tareas/s`;
}

/** A count with its noun in singular or plural: `1 tarea`, `2 tareas`, `0 tareas`. */
export function plural(count: number, one: string, many: string): string {
  return `${formatNumber(count)} ${count === 1 ? one : many}`;
}

/** A UTC offset in minutes east of Greenwich, as `formatTime` shows it: `UTC`, `UTC+1`, `UTC-3:30`. */
export function formatUtcOffset(minutes: number): string {
  if (minutes === 0) return "UTC";
  const sign = minutes > 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  const rest = abs % 60;
  return `UTC${sign}${Math.floor(abs / 60)}${
    rest === 0 ? "" : `:${String(rest).padStart(2, "0")}`
  }`;
}

/**
 * A time for people, in this machine's time zone and saying which: `2025-11-26 21:03:04 UTC+1`; the text
 * itself if it is no time. Every human output shows times this way.
 */
export function formatTime(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const two = (n: number): string => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())} ` +
    formatUtcOffset(-date.getTimezoneOffset());
}

/** How long ago a time was, in whole seconds (never negative): `hace 3 s`. */
export function formatAgo(iso: string, now: number): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso;
  return `hace ${Math.max(0, Math.round((now - then) / 1000))} s`;
}

/** The first 8 characters of a task id, enough to tell tasks apart in a table. */
export function shortId(taskId: string): string {
  return taskId.length <= 8 ? taskId : taskId.slice(0, 8);
}

/** Text cut to `max` characters, with `…` when cut; line ends become spaces. */
export function truncate(text: string, max: number): string {
  const flat = text.replaceAll(/\s*\n\s*/g, " ");
  const chars = [...flat];
  return chars.length <= max ? flat : chars.slice(0, Math.max(0, max - 1)).join("") + "…";
}

/** What `cancelar` says: whether the task was cancelled in time, or the state that made it too late. */
export function formatCancel(
  outcome: { readonly cancelled: boolean; readonly status: TaskStatus },
): string {
  if (outcome.cancelled) return "Cancelada: no se ejecutará";
  if (outcome.status === "cancelled") return "Ya estaba cancelada: no se ejecutará";
  if (outcome.status === "queued") return "No se pudo cancelar: la tarea sigue en cola";
  return `Demasiado tarde: la tarea ya está ${STATUS_LABELS[outcome.status]}`;
}

/** A task type's one name in human outputs: its Spanish label from the catalogue (`texto`). */
export function formatTaskType(type: string, catalog: TaskCatalog = BUILTIN_CATALOG): string {
  return taskLabel(type, catalog);
}

/** An error for people: `CODE: message`. */
export function formatError(error: { readonly code: string; readonly message: string }): string {
  return displayText(`${error.code}: ${error.message}`);
}

function _json(value: unknown): string {
  return JSON.stringify(value) ?? "undefined";
}

/**
 * Labelled lines of a task's output, by its type's `cli.format`; raw JSON when the type has none or the
 * output has an unexpected shape.
 */
export function formatOutput(
  type: string,
  output: unknown,
  catalog: TaskCatalog = BUILTIN_CATALOG,
): string[] {
  const definition = catalog.get(type);
  const format = definition?.cli?.format;
  if (definition === undefined || format === undefined) return [_json(output)];
  const parsed = definition.output.safeParse(output);
  return parsed.success ? format(parsed.data) : [_json(output)];
}

function _indent(lines: readonly string[], by = "    "): string[] {
  return lines.map((line) => by + line.replaceAll("\n", "\n" + by));
}

/** Bytes for people, in binary units: `512 B`, `12.3 KiB`, `5.0 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${formatNumber(bytes)} B`;
  if (bytes < 1024 * 1024) return `${formatNumber(bytes / 1024, 1)} KiB`;
  if (bytes < 1024 ** 3) return `${formatNumber(bytes / 1024 ** 2, 1)} MiB`;
  return `${formatNumber(bytes / 1024 ** 3, 2)} GiB`;
}

/** Outputs whose JSON is longer than this many characters are summed up instead of printed whole. */
export const LARGE_OUTPUT_CHARS = 4096;

/** Where `--salida` wrote a task's whole output, and its size in bytes. */
export interface SavedOutput {
  readonly path: string;
  readonly bytes: number;
}

const encoder = new TextEncoder();

function _textSize(text: string): string {
  const bytes = encoder.encode(text).length;
  return `${formatBytes(bytes)} (${plural(bytes, "byte", "bytes")})`;
}

/**
 * Labelled lines that sum up a large output instead of printing it: for `text`, the word count and the size
 * of each text; for other types, the size of each long string, or of the whole JSON.
 */
export function formatOutputSummary(type: string, output: unknown): string[] {
  if (type === "text") {
    const out = TASKS.text.output.safeParse(output);
    if (out.success) {
      return [
        `palabras:    ${out.data.words}`,
        `invertido:   ${_textSize(out.data.reversed)}`,
        `mayúsculas:  ${_textSize(out.data.upper)}`,
      ];
    }
  }
  return [`JSON de ${formatBytes(encoder.encode(_json(output)).length)}`];
}

/** Whether a result's output is too large to print whole: it came as a download, or its JSON is long. */
export function isLargeOutput(result: TaskResult): boolean {
  if (result.status !== "succeeded") return false;
  return result.outputRef !== undefined || _json(result.output).length > LARGE_OUTPUT_CHARS;
}

/**
 * A task result for people, with the submit → result time measured by the client. A large output is summed
 * up (word count and sizes); `saved` says where `--salida` wrote it whole.
 */
export function formatResult(
  result: TaskResult,
  options: {
    readonly roundTripMs: number;
    readonly saved?: SavedOutput | undefined;
    readonly catalog?: TaskCatalog;
  },
): string {
  const { roundTripMs, saved, catalog = BUILTIN_CATALOG } = options;
  const type = formatTaskType(result.taskType, catalog);
  const head = result.status === "succeeded"
    ? `Tarea completada: ${type}`
    : result.status === "cancelled"
    ? `Tarea cancelada: ${type}`
    : `La tarea falló: ${type}`;
  const lines = [
    head,
    `  id:         ${result.taskId}`,
    `  worker:     ${result.worker}`,
    `  duración:   ${formatMs(result.durationMs)} en el worker, ${
      formatMs(roundTripMs)
    } desde el envío`,
  ];
  if (result.status === "cancelled") {
    lines.push(`  motivo:     ${formatError(result.error)}`);
  } else if (result.status !== "succeeded") {
    lines.push(`  error:      ${formatError(result.error)}`);
  } else if (isLargeOutput(result)) {
    lines.push(
      saved === undefined
        ? "  resultado (grande; no se muestra entero: guárdelo con --salida <fichero>):"
        : "  resultado (grande; no se muestra entero):",
      ..._indent(formatOutputSummary(result.taskType, result.output)),
    );
  } else {
    lines.push(
      "  resultado:",
      ..._indent(formatOutput(result.taskType, result.output, catalog)),
    );
  }
  if (saved !== undefined) {
    lines.push(`  guardado:   ${saved.path} (${formatBytes(saved.bytes)}, JSON)`);
  }
  return lines.map(displayText).join("\n");
}

/**
 * The plain object `--json` prints for a result: the wire `result` frame without its `type`. With `saved`
 * (`--salida`), the output is in that file: `salida` and `outputBytes` stand in for it.
 */
export function resultToJson(result: TaskResult, saved?: SavedOutput): Record<string, unknown> {
  const base = {
    taskId: result.taskId,
    taskType: result.taskType,
    status: result.status,
    worker: result.worker,
    durationMs: result.durationMs,
  };
  if (result.status !== "succeeded") return { ...base, error: result.error.toWire() };
  return saved === undefined
    ? { ...base, output: result.output }
    : { ...base, salida: saved.path, outputBytes: saved.bytes };
}

/** The plain object `--json` prints for an error. */
export function errorToJson(error: ColmenaError): Record<string, unknown> {
  return { error: error.toWire() };
}

/**
 * A task record, as `estado` shows it. `noWorker` adds a note that no live worker runs its type (for a
 * task still waiting).
 */
export function formatTaskView(
  view: TaskView,
  options: { readonly catalog?: TaskCatalog; readonly noWorker?: boolean } = {},
): string {
  const lines = [
    `Tarea ${view.taskId}`,
    `  estado:      ${STATUS_LABELS[view.status]} (${view.status})`,
    `  tipo:        ${formatTaskType(view.taskType, options.catalog)}`,
    `  prioridad:   ${view.priority}`,
    `  cliente:     ${view.client.name} (${CLIENT_KIND_LABELS[view.client.kind]})`,
    `  enviada:     ${formatTime(view.submittedAt)}`,
  ];
  if (view.startedAt !== undefined) lines.push(`  iniciada:    ${formatTime(view.startedAt)}`);
  if (view.finishedAt !== undefined) lines.push(`  terminada:   ${formatTime(view.finishedAt)}`);
  if (view.worker !== undefined) lines.push(`  worker:      ${view.worker}`);
  if (view.durationMs !== undefined) lines.push(`  duración:    ${formatMs(view.durationMs)}`);
  if (view.output !== undefined) {
    lines.push(
      "  resultado:",
      ..._indent(formatOutput(view.taskType, view.output, options.catalog)),
    );
  }
  if (view.error !== undefined) lines.push(`  error:       ${formatError(view.error)}`);
  if (options.noWorker === true && (view.status === "queued" || view.status === "running")) {
    lines.push("  aviso:       ningún worker vivo ejecuta este tipo; espera a que arranque uno");
  }
  return lines.map(displayText).join("\n");
}

/** Column alignment of {@linkcode formatTable}. */
export type Align = "left" | "right";

/** A plain-text table: a header row, a rule, then the rows, columns padded to fit; left-aligned by default. */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  options: { readonly align?: readonly Align[] } = {},
): string {
  const align = options.align ?? [];
  header = header.map(displayText);
  rows = rows.map((row) => row.map(displayText));
  const widths = header.map((cell, i) =>
    Math.max(_width(cell), ...rows.map((row) => _width(row[i] ?? "")))
  );
  const render = (row: readonly string[]): string =>
    row.map((cell, i) => {
      const pad = " ".repeat(Math.max(0, (widths[i] ?? 0) - _width(cell)));
      return (align[i] ?? "left") === "right" ? pad + cell : cell + pad;
    }).join("  ").trimEnd();
  const rule = widths.map((width) => "─".repeat(width)).join("  ");
  return [render(header), rule, ...rows.map(render)].map((line) => "  " + line).join("\n");
}

function _width(text: string): number {
  return [...text].length;
}
