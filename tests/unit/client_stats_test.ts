/**
 * Unit tests of `client/stats.ts` and the task split of `client/simulate.ts`: percentiles and summaries.
 *
 * @module
 */
import assert from "node:assert/strict";
import { splitTasks } from "../../client/simulate.ts";
import {
  latencyStats,
  MISMATCH,
  percentile,
  type SimulatedTask,
  SimulationStats,
} from "../../client/stats.ts";

Deno.test("percentile uses the nearest rank", () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 95), 95);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile(values, 0), 1);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([], 50), 0);
});

Deno.test("latencyStats sorts numerically before taking percentiles", () => {
  const stats = latencyStats([10, 9, 100, 1, 2]);
  assert.deepEqual(stats, { count: 5, p50: 9, p95: 100, p99: 100, max: 100, mean: 24.4 });
  assert.deepEqual(latencyStats([]), { count: 0, p50: 0, p95: 0, p99: 0, max: 0, mean: 0 });
});

Deno.test("splitTasks spreads the total evenly, the remainder to the first clients", () => {
  assert.deepEqual(splitTasks(10, 3), [4, 3, 3]);
  assert.deepEqual(splitTasks(2, 4), [1, 1, 0, 0]);
  assert.deepEqual(splitTasks(0, 2), [0, 0]);
  const counts = splitTasks(500, 20);
  assert.equal(counts.length, 20);
  assert.ok(counts.every((count) => count === 25));
});

function task(overrides: Partial<SimulatedTask>): SimulatedTask {
  return {
    client: "sim-web-1",
    kind: "web",
    type: "text",
    taskId: "t",
    worker: "w1",
    latencyMs: 10,
    ok: true,
    error: null,
    ...overrides,
  };
}

Deno.test("SimulationStats summarizes totals, failures, mismatches and groups", () => {
  const stats = new SimulationStats();
  stats.add(task({ latencyMs: 10 }));
  stats.add(task({ latencyMs: 20, kind: "mobile", type: "numbers", worker: "w2" }));
  stats.add(task({
    latencyMs: 30,
    type: "numbers",
    ok: false,
    error: { code: MISMATCH, message: "suma 3, se esperaba 4" },
  }));
  stats.add(task({
    latencyMs: null,
    worker: null,
    taskId: null,
    kind: "mobile",
    ok: false,
    error: { code: "OVERLOADED", message: "El servidor está sobrecargado" },
  }));
  assert.equal(stats.done, 4);
  assert.equal(stats.failed, 2);
  const summary = stats.summarize({
    clients: 2,
    kinds: ["web", "mobile"],
    types: ["text", "numbers"],
    window: 20,
    connectMs: 5,
    elapsedMs: 2000,
  });
  assert.equal(summary.total, 4);
  assert.equal(summary.ok, 2);
  assert.equal(summary.failed, 2);
  assert.equal(summary.mismatches, 1);
  assert.deepEqual(summary.errors, { MISMATCH: 1, OVERLOADED: 1 });
  assert.deepEqual(summary.mismatchExamples, [
    { taskType: "numbers", taskId: "t", message: "suma 3, se esperaba 4" },
  ]);
  assert.equal(summary.tasksPerSecond, 2);
  assert.deepEqual(summary.latency, { count: 3, p50: 20, p95: 30, p99: 30, max: 30, mean: 20 });
  assert.deepEqual(Object.keys(summary.byType), ["text", "numbers"]);
  assert.deepEqual(Object.keys(summary.byKind), ["web", "mobile"]);
  assert.deepEqual(summary.byType.text, {
    count: 2,
    ok: 1,
    failed: 1,
    cancelled: 0,
    latency: { count: 1, p50: 10, p95: 10, p99: 10, max: 10, mean: 10 },
  });
  assert.equal(summary.byKind.mobile?.count, 2);
  assert.deepEqual(
    Object.fromEntries(Object.entries(summary.byWorker).map(([w, g]) => [w, g.count])),
    { w1: 2, w2: 1 },
  );
});

Deno.test("SimulationStats keeps only the first five mismatch examples", () => {
  const stats = new SimulationStats();
  for (let i = 0; i < 8; i++) {
    stats.add(task({ ok: false, taskId: `t${i}`, error: { code: MISMATCH, message: "x" } }));
  }
  const summary = stats.summarize({
    clients: 1,
    kinds: ["web"],
    types: ["text"],
    window: 1,
    connectMs: 0,
    elapsedMs: 0,
  });
  assert.equal(summary.mismatches, 8);
  assert.equal(summary.mismatchExamples.length, 5);
  assert.equal(summary.tasksPerSecond, 0);
});

Deno.test("SimulationStats counts cancelled tasks apart from failed ones", () => {
  const stats = new SimulationStats();
  stats.add(task({ latencyMs: 10 }));
  stats.add(task({
    latencyMs: 5,
    ok: false,
    error: { code: "CANCELLED", message: "La tarea fue cancelada" },
  }));
  assert.equal(stats.failed, 0);
  assert.equal(stats.cancelled, 1);
  const summary = stats.summarize({
    clients: 1,
    kinds: ["web"],
    types: ["text"],
    window: 20,
    connectMs: 1,
    elapsedMs: 100,
    planned: 10,
    interrupted: true,
  });
  assert.equal(summary.failed, 0);
  assert.equal(summary.cancelled, 1);
  assert.equal(summary.byType.text?.cancelled, 1);
  assert.equal(summary.planned, 10);
  assert.equal(summary.interrupted, true);
});
