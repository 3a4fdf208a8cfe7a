/**
 * Unit tests of what the `cliente` command shows: durations, tables, results, the simulation summary,
 * progress, and line input from a pipe.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  formatBytes,
  formatMs,
  formatOutput,
  formatOutputSummary,
  formatResult,
  formatTable,
  isLargeOutput,
  resultToJson,
} from "../../client/format.ts";
import { streamInput } from "../../client/input.ts";
import { ProgressReporter, renderProgressBar } from "../../client/progress.ts";
import type { SimulationSummary } from "../../client/stats.ts";
import { formatSummary } from "../../client/summary.ts";
import { ColmenaError } from "../../shared/errors.ts";

Deno.test("formatMs picks a readable unit", () => {
  assert.equal(formatMs(0.4219), "0.42 ms");
  assert.equal(formatMs(12.34), "12.3 ms");
  assert.equal(formatMs(345.6), "346 ms");
  assert.equal(formatMs(1534), "1.53 s");
  assert.equal(formatMs(65_000), "65.0 s");
});

Deno.test("formatTable pads columns to the widest cell, counting characters", () => {
  const table = formatTable(["tipo", "n"], [["números", "5"], ["eco", "100"]], {
    align: ["left", "right"],
  });
  assert.equal(
    table,
    [
      "  tipo       n",
      "  ───────  ───",
      "  números    5",
      "  eco      100",
    ].join("\n"),
  );
});

Deno.test("formatOutput labels each task type's output in Spanish, raw JSON otherwise", () => {
  assert.deepEqual(formatOutput("text", { words: 2, reversed: "ba", upper: "AB" }), [
    "palabras:    2",
    "invertido:   ba",
    "mayúsculas:  AB",
  ]);
  assert.deepEqual(formatOutput("sleep", { sleptMs: 12 }), ["esperó:      12 ms"]);
  assert.deepEqual(formatOutput("sleep", { odd: true }), ['{"odd":true}']);
  assert.deepEqual(formatOutput("video", [1]), ["[1]"]);
});

Deno.test("formatResult and resultToJson show a failed task's code and message", () => {
  const result = {
    taskId: "t1",
    taskType: "hash",
    worker: "w1",
    durationMs: 3,
    status: "failed",
    error: new ColmenaError("TIMEOUT"),
  } as const;
  const text = formatResult(result, { roundTripMs: 12 });
  assert.match(text, /La tarea falló: hash/);
  assert.match(text, /TIMEOUT: La tarea superó su tiempo máximo/);
  assert.deepEqual(resultToJson(result), {
    taskId: "t1",
    taskType: "hash",
    status: "failed",
    worker: "w1",
    durationMs: 3,
    error: { code: "TIMEOUT", message: "La tarea superó su tiempo máximo" },
  });
});

Deno.test("formatBytes picks a binary unit", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(12_595), "12.3 KiB");
  assert.equal(formatBytes(5 * 1024 * 1024), "5.0 MiB");
  assert.equal(formatBytes(3 * 1024 ** 3), "3.00 GiB");
});

Deno.test("a large output is summed up, with a hint or the file it was saved to", () => {
  const text = "ñ".repeat(3_000);
  const output = { words: 1, reversed: text, upper: text.toUpperCase() };
  assert.deepEqual(formatOutputSummary("text", output), [
    "palabras:    1",
    "invertido:   5.9 KiB (6000 bytes)",
    "mayúsculas:  5.9 KiB (6000 bytes)",
  ]);
  assert.deepEqual(formatOutputSummary("echo", { message: "x".repeat(2048) }), [
    "JSON de 2.0 KiB",
  ]);
  const big = {
    taskId: "t1",
    taskType: "text",
    worker: "w1",
    durationMs: 3,
    status: "succeeded",
    output,
  } as const;
  assert.equal(isLargeOutput(big), true);
  assert.equal(isLargeOutput({ ...big, output: { words: 1, reversed: "a", upper: "A" } }), false);
  assert.equal(
    isLargeOutput({ ...big, output: { words: 1, reversed: "a", upper: "A" }, outputRef: "r" }),
    true,
  );
  const shown = formatResult(big, { roundTripMs: 12 });
  assert.match(shown, /palabras: {4}1/);
  assert.match(shown, /--salida <fichero>/);
  assert.doesNotMatch(shown, /ñññ/);
  const saved = formatResult(big, {
    roundTripMs: 12,
    saved: { path: "salida.json", bytes: 12_345 },
  });
  assert.match(saved, /guardado: {3}salida\.json \(12\.1 KiB, JSON\)/);
  assert.doesNotMatch(saved, /--salida/);
  const small = formatResult({ ...big, output: { words: 1, reversed: "a", upper: "A" } }, {
    roundTripMs: 1,
    saved: { path: "s.json", bytes: 40 },
  });
  assert.match(small, /invertido: {3}a/);
  assert.match(small, /guardado: {3}s\.json/);
});

Deno.test("resultToJson names the --salida file instead of printing the output", () => {
  const result = {
    taskId: "t1",
    taskType: "text",
    worker: "w1",
    durationMs: 3,
    status: "succeeded",
    output: { words: 1, reversed: "a", upper: "A" },
  } as const;
  assert.deepEqual(resultToJson(result, { path: "r.json", bytes: 40 }), {
    taskId: "t1",
    taskType: "text",
    status: "succeeded",
    worker: "w1",
    durationMs: 3,
    salida: "r.json",
    outputBytes: 40,
  });
  assert.deepEqual(resultToJson(result).output, result.output);
});

const LATENCY = { count: 2, p50: 10, p95: 20, p99: 20, max: 20, mean: 15 };

const SUMMARY: SimulationSummary = {
  clients: 2,
  kinds: ["web", "mobile"],
  types: ["text", "numbers"],
  window: 20,
  total: 4,
  planned: 4,
  interrupted: false,
  ok: 3,
  failed: 1,
  cancelled: 0,
  mismatches: 1,
  errors: { MISMATCH: 1 },
  mismatchExamples: [{ taskType: "numbers", taskId: "t9", message: "suma 4, se esperaba 3" }],
  connectMs: 3,
  elapsedMs: 2000,
  tasksPerSecond: 2,
  latency: LATENCY,
  byType: {
    text: { count: 2, ok: 2, failed: 0, cancelled: 0, latency: LATENCY },
    numbers: { count: 2, ok: 1, failed: 1, cancelled: 0, latency: LATENCY },
  },
  byKind: {
    web: { count: 2, ok: 2, failed: 0, cancelled: 0, latency: LATENCY },
    mobile: { count: 2, ok: 1, failed: 1, cancelled: 0, latency: LATENCY },
  },
  byWorker: { w1: { count: 4, ok: 3, failed: 1, cancelled: 0, latency: LATENCY } },
};

Deno.test("formatSummary renders totals, latency and one table per grouping in Spanish", () => {
  const text = formatSummary(SUMMARY);
  assert.match(text, /tareas: +4 \(3 correctas, 1 fallida\)/);
  assert.match(text, /discrepancias: +1/);
  assert.match(text, /rendimiento: +2\.0 tareas\/s/);
  assert.match(text, /p50 10\.0 ms · p95 20\.0 ms · p99 20\.0 ms/);
  assert.match(text, /Por tipo de tarea\n/);
  assert.match(text, /\n {2}números +2 +1 +1 /);
  assert.match(text, /Por tipo de cliente\n/);
  assert.match(text, /\n {2}móvil +2 +1 +1 /);
  assert.match(text, /Por worker\n[^]*\n {2}w1 +4 +10\.0 ms/);
  assert.match(text, /Por código de error\n[^]*MISMATCH +1/);
  assert.match(text, /- números \(t9\): suma 4, se esperaba 3/);
});

Deno.test("renderProgressBar fills in proportion and never shows 100 % early", () => {
  const half = renderProgressBar({ done: 5, failed: 1, total: 10, elapsedMs: 1000 }, 10);
  assert.equal(half, "[█████░░░░░]  50 %  5/10  fallidas 1  5.0 tareas/s  quedan ~1 s");
  const almost = renderProgressBar({ done: 999, failed: 0, total: 1000, elapsedMs: 0 }, 10);
  assert.match(almost, /^\[█████████░\] {2}99 %/);
});

Deno.test("ProgressReporter in lines mode prints once per 10 %", () => {
  const lines: string[] = [];
  const reporter = new ProgressReporter("lines", { write: () => {}, line: (l) => lines.push(l) });
  for (let done = 1; done <= 25; done++) {
    reporter.update({ done, failed: 0, total: 25, elapsedMs: 1 });
  }
  reporter.finish();
  assert.equal(lines.length, 10);
  assert.equal(lines[0], "Progreso: 12 % (3/25 tareas, 0 fallidas, quedan ~1 s)");
  assert.equal(lines[9], "Progreso: 100 % (25/25 tareas, 0 fallidas, quedan 0 s)");
});

Deno.test("streamInput reads piped answers line by line, then null at the end", async () => {
  const encoder = new TextEncoder();
  const chunks = ["1\nho", "la\r\n\n", "últ", "ima"].map((c) => encoder.encode(c));
  const echoed: string[] = [];
  const input = streamInput(ReadableStream.from(chunks), (text) => echoed.push(text));
  assert.equal(await input.ask("Opción:"), "1");
  assert.equal(await input.ask("Texto:"), "hola");
  assert.equal(await input.ask("Texto:"), "");
  assert.equal(await input.ask("Texto:"), "última");
  assert.equal(await input.ask("Opción:"), null);
  await input.close();
  assert.deepEqual(echoed.slice(0, 2), ["Opción: ", "1\n"]);
});
