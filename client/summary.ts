/**
 * `formatSummary`: the Spanish tables that close a simulation.
 *
 * @module
 */
import { isTaskType } from "../shared/tasks.ts";
import { CLIENT_KINDS } from "../shared/protocol.ts";
import { CLIENT_KIND_LABELS, TASK_TYPE_LABELS } from "./args.ts";
import { formatMs, formatTable } from "./format.ts";
import type { GroupStats, LatencyStats, SimulationSummary } from "./stats.ts";

function _ms(latency: LatencyStats, value: number): string {
  return latency.count === 0 ? "—" : formatMs(value);
}

function _groupRows(
  groups: Readonly<Record<string, GroupStats>>,
  label: (key: string) => string,
): string[][] {
  return Object.entries(groups).map(([key, group]) => [
    label(key),
    String(group.count),
    String(group.ok),
    String(group.failed),
    _ms(group.latency, group.latency.p50),
    _ms(group.latency, group.latency.p95),
    _ms(group.latency, group.latency.p99),
  ]);
}

const GROUP_ALIGN = ["left", "right", "right", "right", "right", "right", "right"] as const;

function _kindLabel(kind: string): string {
  return (CLIENT_KINDS as readonly string[]).includes(kind)
    ? CLIENT_KIND_LABELS[kind as keyof typeof CLIENT_KIND_LABELS]
    : kind;
}

function _typeLabel(type: string): string {
  return isTaskType(type) ? TASK_TYPE_LABELS[type] : type;
}

/** Renders a {@linkcode SimulationSummary} as Spanish text: totals, latency, then one table per grouping. */
export function formatSummary(summary: SimulationSummary): string {
  const { latency } = summary;
  const kinds = summary.kinds.map(_kindLabel).join(", ");
  const sections = [
    [
      "Resumen de la simulación",
      `  clientes:         ${summary.clients} (${kinds}), ${summary.window} tareas en vuelo cada uno`,
      `  tareas:           ${summary.total} (${summary.ok} correctas, ${summary.failed} fallidas)`,
      `  discrepancias:    ${summary.mismatches}`,
      `  tiempo:           ${formatMs(summary.elapsedMs)} (conexión: ${
        formatMs(summary.connectMs)
      })`,
      `  rendimiento:      ${summary.tasksPerSecond.toFixed(1)} tareas/s`,
      `  latencia:         p50 ${_ms(latency, latency.p50)} · p95 ${
        _ms(latency, latency.p95)
      } · p99 ${_ms(latency, latency.p99)} · máx ${_ms(latency, latency.max)} (envío → resultado)`,
    ].join("\n"),
  ];
  const groupHeader = ["", "tareas", "correctas", "fallidas", "p50", "p95", "p99"];
  sections.push(
    "Por tipo de tarea\n" +
      formatTable(
        ["tipo", ...groupHeader.slice(1)],
        _groupRows(summary.byType, _typeLabel),
        { align: GROUP_ALIGN },
      ),
    "Por tipo de cliente\n" +
      formatTable(
        ["cliente", ...groupHeader.slice(1)],
        _groupRows(summary.byKind, _kindLabel),
        { align: GROUP_ALIGN },
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
            String(group.count),
            _ms(group.latency, group.latency.p50),
          ]),
          { align: ["left", "right", "right"] },
        ),
    );
  }
  const errors = Object.entries(summary.errors);
  if (errors.length > 0) {
    sections.push(
      "Fallos por código\n" +
        formatTable(
          ["código", "tareas"],
          errors.map(([code, count]) => [code, String(count)]),
          { align: ["left", "right"] },
        ),
    );
  }
  if (summary.mismatchExamples.length > 0) {
    sections.push(
      "Discrepancias (primeras)\n" +
        summary.mismatchExamples.map((example) => `  - ${example}`).join("\n"),
    );
  }
  return sections.join("\n\n");
}
