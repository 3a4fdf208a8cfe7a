/**
 * The server's metrics in the Prometheus text exposition format 0.0.4, written by hand: counters from
 * `stats.ts`, gauges read at scrape time, and the submit→result latency histogram.
 *
 * @module
 */
import type { QueueDepth } from "../shared/ports.ts";
import { LATENCY_BUCKETS_S, type ServerStats, TASK_OUTCOMES } from "./stats.ts";

/** The `Content-Type` of {@linkcode renderMetrics}'s text. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Values read at scrape time. */
export interface ServerGauges {
  /** Open client connections, by the kind their `hello` gave (`cli` before one). */
  readonly clientsByKind: ReadonlyMap<string, number>;
  /** Workers heard from within the liveness window. */
  readonly workersAlive: number;
  /** Tasks whose result a connection on this server still awaits. */
  readonly tasksAwaiting: number;
  /** Whether the broker connection is up. */
  readonly brokerConnected: boolean;
  /** Times the broker connection was lost and made again. */
  readonly brokerReconnects: number;
  /** Messages waiting in each queue, or `undefined` when the broker could not be asked. */
  readonly queueDepths: readonly QueueDepth[] | undefined;
}

const OUTCOME_HELP: Record<(typeof TASK_OUTCOMES)[number], string> = {
  submitted: "Valid submits that reached the publish step, by task type",
  accepted: "Submits answered accepted that created a task, by task type",
  rejected: "Submits whose publish failed for good, by task type",
  succeeded: "Tasks whose first result recorded here succeeded, by task type",
  failed: "Tasks whose first result recorded here failed, by task type",
  cancelled: "Queued tasks cancelled through this server, by task type",
};

/** A label value escaped as the format asks (backslash, double quote, newline). */
function _label(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function _header(lines: string[], name: string, type: string, help: string): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
}

function _byLabel(
  lines: string[],
  name: string,
  label: string,
  counts: ReadonlyMap<string, number>,
) {
  for (const key of [...counts.keys()].sort()) {
    lines.push(`${name}{${label}="${_label(key)}"} ${counts.get(key)}`);
  }
}

/** Every metric as Prometheus text: one `# HELP`/`# TYPE` pair per family, series sorted by label. */
export function renderMetrics(stats: ServerStats, gauges: ServerGauges): string {
  const lines: string[] = [];
  for (const outcome of TASK_OUTCOMES) {
    const name = outcome === "submitted" || outcome === "accepted" || outcome === "rejected"
      ? `colmena_tasks_${outcome}_total`
      : `colmena_results_${outcome}_total`;
    _header(lines, name, "counter", OUTCOME_HELP[outcome]);
    _byLabel(lines, name, "type", stats.tasks[outcome]);
  }
  const scalars: [string, string, number][] = [
    [
      "colmena_results_duplicate_total",
      "Results already recorded that came again",
      stats.duplicates,
    ],
    [
      "colmena_results_forwarded_total",
      "Results forwarded to the server that accepted their task",
      stats.forwarded,
    ],
    [
      "colmena_publish_retried_total",
      "Publishes that succeeded only after a lost confirm and a reconnect",
      stats.republished,
    ],
    ["colmena_connections_total", "Client connections taken", stats.connections],
  ];
  for (const [name, help, value] of scalars) {
    _header(lines, name, "counter", help);
    lines.push(`${name} ${value}`);
  }
  _header(lines, "colmena_clients_connected", "gauge", "Open client connections, by client kind");
  _byLabel(lines, "colmena_clients_connected", "kind", gauges.clientsByKind);
  _header(lines, "colmena_workers_alive", "gauge", "Workers heard from within the liveness window");
  lines.push(`colmena_workers_alive ${gauges.workersAlive}`);
  _header(
    lines,
    "colmena_tasks_awaiting_result",
    "gauge",
    "Tasks whose result a client here awaits",
  );
  lines.push(`colmena_tasks_awaiting_result ${gauges.tasksAwaiting}`);
  _header(lines, "colmena_broker_connected", "gauge", "1 while the RabbitMQ connection is up");
  lines.push(`colmena_broker_connected ${gauges.brokerConnected ? 1 : 0}`);
  _header(
    lines,
    "colmena_broker_reconnects_total",
    "counter",
    "Times the RabbitMQ connection was lost and made again",
  );
  lines.push(`colmena_broker_reconnects_total ${gauges.brokerReconnects}`);
  _header(
    lines,
    "colmena_tasks_accepted_by_kind_total",
    "counter",
    "Submits answered accepted that created a task, by client kind",
  );
  _byLabel(lines, "colmena_tasks_accepted_by_kind_total", "kind", stats.acceptedByKind);
  _header(
    lines,
    "colmena_queue_messages",
    "gauge",
    "Messages ready in each queue (task, retry, result, dlq), read at scrape time",
  );
  const depths = [...(gauges.queueDepths ?? [])].sort((a, b) => a.queue.localeCompare(b.queue));
  for (const d of depths) {
    const type = d.taskType === undefined ? "" : `,type="${_label(d.taskType)}"`;
    lines.push(
      `colmena_queue_messages{queue="${_label(d.queue)}",kind="${d.kind}"${type}} ${d.messages}`,
    );
  }
  const histogram = "colmena_task_latency_seconds";
  _header(lines, histogram, "histogram", "Seconds from a submit to its result, by task type");
  for (const type of [...stats.latency.keys()].sort()) {
    const h = stats.latency.get(type)!;
    const label = `type="${_label(type)}"`;
    let cumulative = 0;
    LATENCY_BUCKETS_S.forEach((bound, i) => {
      cumulative += h.buckets[i]!;
      lines.push(`${histogram}_bucket{${label},le="${bound}"} ${cumulative}`);
    });
    lines.push(`${histogram}_bucket{${label},le="+Inf"} ${h.count}`);
    lines.push(`${histogram}_sum{${label}} ${h.sum}`);
    lines.push(`${histogram}_count{${label}} ${h.count}`);
  }
  return lines.join("\n") + "\n";
}
