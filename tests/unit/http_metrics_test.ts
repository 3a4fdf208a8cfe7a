/**
 * Unit: the Prometheus text of `server/metrics.ts`, the latency buckets of `server/stats.ts` and the routing
 * of `server/http.ts`, with plain objects in place of a server.
 *
 * @module
 */
import assert from "node:assert/strict";
import { handleHttp, type HttpTarget } from "../../server/http.ts";
import { renderMetrics } from "../../server/metrics.ts";
import { countTask, newServerStats, observeLatency } from "../../server/stats.ts";

const GAUGES = {
  clientsByKind: new Map([["web", 2], ["cli", 1]]),
  workersAlive: 3,
  tasksAwaiting: 4,
  brokerConnected: true,
  brokerReconnects: 2,
  queueDepths: [
    {
      queue: "task_queue.text",
      kind: "task" as const,
      taskType: "text",
      messages: 7,
      consumers: 1,
    },
    { queue: "task_queue.dlq", kind: "dlq" as const, messages: 3, consumers: 0 },
  ],
};

Deno.test("metrics count tasks by outcome and type, sorted, with one HELP and TYPE per family", () => {
  const stats = newServerStats();
  countTask(stats, "submitted", "text");
  countTask(stats, "submitted", "echo");
  countTask(stats, "submitted", "echo");
  countTask(stats, "failed", 'raro"\\');
  const lines = renderMetrics(stats, GAUGES).split("\n");
  const submitted = lines.filter((l) => l.startsWith("colmena_tasks_submitted_total"));
  assert.deepEqual(submitted, [
    'colmena_tasks_submitted_total{type="echo"} 2',
    'colmena_tasks_submitted_total{type="text"} 1',
  ]);
  assert.ok(lines.includes('colmena_results_failed_total{type="raro\\"\\\\"} 1'));
  assert.ok(lines.includes('colmena_clients_connected{kind="cli"} 1'));
  assert.ok(lines.includes("colmena_workers_alive 3"));
  assert.ok(lines.includes("colmena_tasks_awaiting_result 4"));
  assert.ok(lines.includes("colmena_broker_connected 1"));
  assert.ok(lines.includes("colmena_broker_reconnects_total 2"));
  assert.ok(lines.includes('colmena_queue_messages{queue="task_queue.dlq",kind="dlq"} 3'));
  assert.ok(
    lines.includes('colmena_queue_messages{queue="task_queue.text",kind="task",type="text"} 7'),
  );
  const types = lines.filter((l) => l.startsWith("# TYPE "));
  assert.equal(new Set(types).size, types.length);
  assert.equal(lines.filter((l) => l.startsWith("# HELP ")).length, types.length);
});

Deno.test("the latency histogram is cumulative, ends in +Inf and keeps sum and count", () => {
  const stats = newServerStats();
  for (const seconds of [0.001, 0.005, 0.3, 1_000]) observeLatency(stats, "echo", seconds);
  const lines = renderMetrics(stats, GAUGES).split("\n");
  const bucket = (le: string) =>
    lines.find((l) => l.startsWith(`colmena_task_latency_seconds_bucket{type="echo",le="${le}"}`));
  assert.equal(bucket("0.005"), 'colmena_task_latency_seconds_bucket{type="echo",le="0.005"} 2');
  assert.equal(bucket("0.25"), 'colmena_task_latency_seconds_bucket{type="echo",le="0.25"} 2');
  assert.equal(bucket("0.5"), 'colmena_task_latency_seconds_bucket{type="echo",le="0.5"} 3');
  assert.equal(bucket("300"), 'colmena_task_latency_seconds_bucket{type="echo",le="300"} 3');
  assert.equal(bucket("+Inf"), 'colmena_task_latency_seconds_bucket{type="echo",le="+Inf"} 4');
  assert.ok(lines.includes('colmena_task_latency_seconds_count{type="echo"} 4'));
  assert.ok(lines.includes('colmena_task_latency_seconds_sum{type="echo"} 1000.306'));
});

function target(ready: { broker: boolean; almacen: boolean }, draining = false): HttpTarget {
  return {
    draining: () => draining,
    readiness: () => Promise.resolve(ready),
    metrics: () => "colmena_workers_alive 0\n",
  };
}

async function call(t: HttpTarget, path: string, method = "GET") {
  const response = await handleHttp(new Request(`http://x${path}`, { method }), t);
  return { status: response.status, body: await response.text(), headers: response.headers };
}

Deno.test("readyz says what is not ready, and 503 without asking while draining", async () => {
  const ok = await call(target({ broker: true, almacen: true }), "/readyz");
  assert.equal(ok.status, 200);
  const down = await call(target({ broker: false, almacen: true }), "/readyz");
  assert.equal(down.status, 503);
  assert.deepEqual(JSON.parse(down.body), { estado: "no listo", broker: false, almacen: true });
  const draining = await call(target({ broker: true, almacen: true }, true), "/readyz");
  assert.equal(draining.status, 503);
  assert.deepEqual(JSON.parse(draining.body), { estado: "no listo", drenando: true });
});

Deno.test("unknown paths answer 404 and other methods 405 with Allow: GET, in Spanish JSON", async () => {
  const t = target({ broker: true, almacen: true });
  const missing = await call(t, "/metricas");
  assert.equal(missing.status, 404);
  assert.equal(JSON.parse(missing.body).message, "No existe la ruta /metricas");
  const post = await call(t, "/healthz", "POST");
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET");
  assert.match(JSON.parse(post.body).message, /solo admite GET, no POST/);
  const metrics = await call(t, "/metrics");
  assert.equal(metrics.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
});
