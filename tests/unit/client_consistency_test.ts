/**
 * Unit tests of what every human output of `cliente` shares: plurals, one name per task type (its Spanish
 * label, from the catalogue), times with their zone, one number format, and cancelled tasks called so.
 *
 * @module
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { formatDeadLetters, formatWorkers } from "../../client/admin.ts";
import { parseTaskTypes } from "../../client/args.ts";
import {
  formatPercent,
  formatRate,
  formatResult,
  formatTaskView,
  formatTime,
  formatUtcOffset,
  plural,
} from "../../client/format.ts";
import { formatHistory } from "../../client/history.ts";
import { estimateRemaining, formatEta, renderProgressLine } from "../../client/progress.ts";
import type { SimulationSummary } from "../../client/stats.ts";
import { formatSummary } from "../../client/summary.ts";
import { TaskCatalog } from "../../shared/catalog.ts";
import { ColmenaError } from "../../shared/errors.ts";
import { defineTask } from "../../shared/task_definition.ts";

/** A user's task type whose Spanish label differs from its wire name. */
const CATALOG = TaskCatalog.withBuiltins([
  defineTask({
    name: "resize",
    description: "Cambia el tamaño de una imagen",
    input: z.object({ width: z.number() }),
    output: z.object({ ok: z.boolean() }),
    timeoutMs: 1_000,
    handler: new URL("file:///nowhere/resize.ts"),
    cli: { label: "redimensionar" },
  }),
]);

const ZONE = formatUtcOffset(-new Date(2025, 10, 26, 21, 3, 4).getTimezoneOffset());

Deno.test("plural agrees the noun with the count", () => {
  assert.equal(plural(1, "tarea", "tareas"), "1 tarea");
  assert.equal(plural(2, "worker vivo", "workers vivos"), "2 workers vivos");
  assert.equal(plural(0, "fallida", "fallidas"), "0 fallidas");
});

Deno.test("formatTime says the time zone, and formatUtcOffset writes it as UTC±h[:mm]", () => {
  assert.equal(formatUtcOffset(0), "UTC");
  assert.equal(formatUtcOffset(60), "UTC+1");
  assert.equal(formatUtcOffset(-210), "UTC-3:30");
  assert.equal(formatUtcOffset(345), "UTC+5:45");
  const iso = new Date(2025, 10, 26, 21, 3, 4).toISOString();
  assert.equal(formatTime(iso), `2025-11-26 21:03:04 ${ZONE}`);
  assert.equal(formatTime("ayer"), "ayer");
});

Deno.test("estado shows its times like historial, with the zone, not raw ISO", () => {
  const iso = new Date(2025, 10, 26, 21, 3, 4).toISOString();
  const text = formatTaskView({
    taskId: "t1",
    taskType: "resize",
    status: "queued",
    priority: 0,
    client: { name: "ana", kind: "web" },
    submittedAt: iso,
  }, { catalog: CATALOG });
  assert.match(text, new RegExp(`enviada: +2025-11-26 21:03:04 ${ZONE.replace("+", "\\+")}$`, "m"));
  assert.match(text, /tipo: +redimensionar$/m);
});

Deno.test("a cancelled task's result says cancelada, not that it failed", () => {
  const text = formatResult({
    taskId: "t1",
    taskType: "text",
    worker: "w1",
    durationMs: 0,
    status: "cancelled",
    error: new ColmenaError("CANCELLED"),
  }, { roundTripMs: 3 });
  assert.match(text, /^Tarea cancelada: texto/);
  assert.doesNotMatch(text, /falló/);
  assert.match(text, /CANCELLED: La tarea fue cancelada/);
});

Deno.test("historial, dlq listar and workers name a user's task type by its label", () => {
  const history = formatHistory([{
    taskId: "t1",
    taskType: "resize",
    status: "cancelled",
    priority: 0,
    client: { name: "ana", kind: "web" },
    submittedAt: new Date(2025, 10, 26, 21, 3, 4).toISOString(),
  }], CATALOG);
  assert.match(history, /redimensionar +cancelada/);
  assert.match(history, new RegExp(`21:03:04 ${ZONE.replace("+", "\\+")}`));
  const dlq = formatDeadLetters([{
    taskId: "t2",
    taskType: "resize",
    attempt: 3,
    maxAttempts: 3,
    client: { name: "ana", kind: "web" },
    submittedAt: "2025-11-26T10:00:00.000Z",
    error: { code: "TIMEOUT", message: "La tarea superó su tiempo máximo" },
    deadAt: null,
  }], CATALOG);
  assert.match(dlq, /t2 +redimensionar +3\/3 +TIMEOUT: La tarea/);
  const workers = formatWorkers(
    [{
      worker: "w1",
      host: "h",
      pid: 1,
      concurrency: 2,
      inProgress: 0,
      processed: 1,
      failed: 0,
      startedAt: "2025-11-26T11:00:00.000Z",
      lastSeen: "2025-11-26T12:00:00.000Z",
      stopping: false,
      types: ["text", "resize"],
    }],
    Date.parse("2025-11-26T12:00:01.000Z"),
    CATALOG,
  );
  assert.match(workers, /texto,redimensionar$/m);
});

Deno.test("an unknown task type is answered with the Spanish names", () => {
  const parsed = parseTaskTypes("video", CATALOG);
  assert.equal(parsed.ok, false);
  assert.match(
    parsed.ok ? "" : parsed.message,
    /Use texto, números, eco, esperar, hash, redimensionar$/,
  );
});

const LATENCY = { count: 1, p50: 10, p95: 10, p99: 10, max: 10, mean: 10 };

Deno.test("the simulation summary uses labels, plurals, cancelada, and says when it is partial", () => {
  const group = { count: 3, ok: 1, failed: 1, cancelled: 1, latency: LATENCY };
  const summary: SimulationSummary = {
    clients: 1,
    kinds: ["web"],
    types: ["resize"],
    window: 1,
    total: 3,
    planned: 50,
    interrupted: true,
    ok: 1,
    failed: 1,
    cancelled: 1,
    mismatches: 0,
    errors: { CANCELLED: 1, TIMEOUT: 1 },
    mismatchExamples: [],
    connectMs: 1,
    elapsedMs: 1000,
    tasksPerSecond: 3,
    latency: LATENCY,
    byType: { resize: group },
    byKind: { web: group },
    byWorker: {},
  };
  const text = formatSummary(summary, CATALOG);
  assert.match(text, /^Resumen parcial de la simulación/);
  assert.match(text, /clientes: +1 \(web\), 1 tarea en vuelo cada uno/);
  assert.match(text, /tareas: +3 de 50 terminadas \(1 correcta, 1 fallida, 1 cancelada\)/);
  assert.match(text, /rendimiento: +3\.0 tareas\/s/);
  assert.match(text, /tipo +tareas +correctas +fallidas +canceladas/);
  assert.match(text, /\n {2}redimensionar +3 +1 +1 +1 /);
  assert.doesNotMatch(text, /resize/);
});

Deno.test("progress shows percent, rate and ETA the way the summary does", () => {
  assert.equal(formatPercent(0.456), "45 %");
  assert.equal(formatRate(406.25), "406.3 tareas/s");
  assert.equal(formatEta(12.2), "13 s");
  assert.equal(formatEta(125), "2 min 05 s");
  assert.equal(formatEta(3720), "1 h 02 min");
  assert.equal(estimateRemaining({ done: 0, failed: 0, total: 10, elapsedMs: 0 }), "quedan ?");
  assert.equal(
    estimateRemaining({ done: 100, failed: 0, total: 400, elapsedMs: 10_000 }),
    "quedan ~30 s",
  );
  assert.equal(
    renderProgressLine({ done: 1, failed: 1, total: 4, elapsedMs: 1000 }),
    "Progreso: 25 % (1/4 tareas, 1 fallida, quedan ~3 s)",
  );
});
