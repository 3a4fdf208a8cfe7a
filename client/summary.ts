/**
 * `formatSummary`: the Spanish tables that close a simulation (or sum up what ended before Ctrl-C).
 *
 * @module
 */
import { CLIENT_KINDS } from "../shared/protocol.ts";
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import { CLIENT_KIND_LABELS, taskLabel } from "./args.ts";
import { formatMs, formatNumber, formatRate, formatTable, plural } from "./format.ts";
import type { GroupStats, LatencyStats, SimulationSummary } from "./stats.ts";

function _ms(latency: LatencyStats, value: number): string {
  return latency.count === 0 ? "—" : formatMs(value);
}

function _groupRows(
  groups: Readonly<Record<string, GroupStats>>,
  options: { readonly label: (key: string) => string; readonly cancelled: boolean },
): string[][] {
  return Object.entries(groups).map(([key, group]) => [
    options.label(key),
    formatNumber(group.count),
    formatNumber(group.ok),
    formatNumber(group.failed),
    ...(options.cancelled ? [formatNumber(group.cancelled)] : []),
    _ms(group.latency, group.latency.p50),
    _ms(group.latency, group.latency.p95),
    _ms(group.latency, group.latency.p99),
  ]);
}

function _kindLabel(kind: string): string {
  return (CLIENT_KINDS as readonly string[]).includes(kind)
    ? CLIENT_KIND_LABELS[kind as keyof typeof CLIENT_KIND_LABELS]
    : kind;
}

/** `3 correctas, 1 fallida` (and the cancelled ones, when there are). */
function _outcomes(summary: SimulationSummary): string {
  const parts = [
    plural(summary.ok, "correcta", "correctas"),
    plural(summary.failed, "fallida", "fallidas"),
  ];
  if (summary.cancelled > 0) parts.push(plural(summary.cancelled, "cancelada", "canceladas"));
  return parts.join(", ");
}

/**
 * Renders a {@linkcode SimulationSummary} as Spanish text: totals, latency, then one table per grouping.
 * Task types go by their Spanish label from `catalog`; an interrupted simulation is marked partial.
 */
export function formatSummary(
  summary: SimulationSummary,
  catalog: TaskCatalog = BUILTIN_CATALOG,
): string {
  const { latency } = summary;
  const typeLabel = (type: string): string => taskLabel(type, catalog);
  const kinds = summary.kinds.map(_kindLabel).join(", ");
  const tasks = summary.interrupted
    ? `${formatNumber(summary.total)} de ${formatNumber(summary.planned)} terminadas`
    : formatNumber(summary.total);
  const sections = [
    [
      summary.interrupted
        ? "Resumen parcial de la simulación (interrumpida: solo las tareas terminadas hasta entonces)"
        : "Resumen de la simulación",
      `  clientes:         ${formatNumber(summary.clients)} (${kinds}), ${
        plural(summary.window, "tarea", "tareas")
      } en vuelo cada uno`,
      `  tareas:           ${tasks} (${_outcomes(summary)})`,
      `  discrepancias:    ${formatNumber(summary.mismatches)}`,
      `  tiempo:           ${formatMs(summary.elapsedMs)} (conexión: ${
        formatMs(summary.connectMs)
      })`,
      `  rendimiento:      ${formatRate(summary.tasksPerSecond)}`,
      `  latencia:         p50 ${_ms(latency, latency.p50)} · p95 ${
        _ms(latency, latency.p95)
      } · p99 ${_ms(latency, latency.p99)} · máx ${_ms(latency, latency.max)} (envío → resultado)`,
    ].join("\n"),
  ];
  const cancelled = summary.cancelled > 0;
  const counts = ["tareas", "correctas", "fallidas", ...(cancelled ? ["canceladas"] : [])];
  const header = [...counts, "p50", "p95", "p99"];
  const align = ["left", ...header.map(() => "right" as const)] as const;
  sections.push(
    "Por tipo de tarea\n" +
      formatTable(
        ["tipo", ...header],
        _groupRows(summary.byType, { label: typeLabel, cancelled }),
        { align },
      ),
    "Por tipo de cliente\n" +
      formatTable(
        ["cliente", ...header],
        _groupRows(summary.byKind, { label: _kindLabel, cancelled }),
        { align },
      ),
  );
  const workers = Object.entries(summary.byWorker);
  if (workers.length > 0) {
    sections.push(
      "Por worker\n" +
        formatTable(
          ["worker", "tareas", "p50"],
          workers.map(([name, group]) => [
            name,
            formatNumber(group.count),
            _ms(group.latency, group.latency.p50),
          ]),
          { align: ["left", "right", "right"] },
        ),
    );
  }
  const errors = Object.entries(summary.errors);
  if (errors.length > 0) {
    sections.push(
      "Por código de error\n" +
        formatTable(
          ["código", "tareas"],
          errors.map(([code, count]) => [code, formatNumber(count)]),
          { align: ["left", "right"] },
        ),
    );
  }
  if (summary.mismatchExamples.length > 0) {
    sections.push(
      "Discrepancias (primeras)\n" +
        summary.mismatchExamples.map((example) =>
          `  - ${typeLabel(example.taskType)} (${example.taskId ?? "?"}): ${example.message}`
        ).join("\n"),
    );
  }
  return sections.join("\n\n");
}
