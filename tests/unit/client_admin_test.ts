/**
 * Unit tests of the pure parts of `cliente cancelar`, `workers`, `dlq` and the menu entries for them.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dlqLimit, formatDeadLetters, formatWorkers } from "../../client/admin.ts";
import { formatAgo, formatCancel, shortId, truncate } from "../../client/format.ts";
import { menuText, parseMenuChoice } from "../../client/menu.ts";
import type { DeadLetterInfo, WorkerInfo } from "../../client/task_client.ts";

const NOW = Date.UTC(2025, 10, 26, 12, 0, 0);

Deno.test("formatCancel says whether the cancel was in time, or the state that made it late", () => {
  assert.equal(
    formatCancel({ cancelled: true, status: "cancelled" }),
    "Cancelada: no se ejecutará",
  );
  assert.equal(
    formatCancel({ cancelled: false, status: "running" }),
    "Demasiado tarde: la tarea ya está en ejecución",
  );
  assert.equal(
    formatCancel({ cancelled: false, status: "succeeded" }),
    "Demasiado tarde: la tarea ya está completada",
  );
  assert.equal(
    formatCancel({ cancelled: false, status: "failed" }),
    "Demasiado tarde: la tarea ya está fallida",
  );
  assert.equal(
    formatCancel({ cancelled: false, status: "cancelled" }),
    "Ya estaba cancelada: no se ejecutará",
  );
});

Deno.test("formatAgo, shortId and truncate", () => {
  assert.equal(formatAgo("2025-11-26T11:59:57.400Z", NOW), "hace 3 s");
  assert.equal(formatAgo("2025-11-26T12:00:01Z", NOW), "hace 0 s");
  assert.equal(formatAgo("nunca", NOW), "nunca");
  assert.equal(shortId("0f8fad5b-d9cb-469f-a165-70867728950e"), "0f8fad5b");
  assert.equal(shortId("abc"), "abc");
  assert.equal(truncate("abcdef", 4), "abc…");
  assert.equal(truncate("abcd", 4), "abcd");
  assert.equal(truncate("línea\n  dos", 20), "línea dos");
});

function _worker(overrides: Partial<WorkerInfo>): WorkerInfo {
  return {
    worker: "worker1",
    host: "maquina-a",
    pid: 4242,
    concurrency: 100,
    inProgress: 3,
    processed: 1500,
    failed: 2,
    startedAt: "2025-11-26T10:00:00.000Z",
    lastSeen: "2025-11-26T11:59:58.000Z",
    stopping: false,
    types: ["echo", "sleep"],
    ...overrides,
  };
}

Deno.test("formatWorkers shows one row per worker, last seen in seconds, who is stopping and its types", () => {
  const table = formatWorkers([
    _worker({}),
    _worker({
      worker: "w2",
      host: "b",
      pid: 7,
      concurrency: 5,
      inProgress: 0,
      processed: 0,
      failed: 0,
      lastSeen: "2025-11-26T11:59:49.000Z",
      stopping: true,
      types: ["resumen"],
    }),
  ], NOW);
  assert.equal(
    table,
    [
      "  nombre   host        pid  concurrencia  en curso  procesadas  fallidas      visto  estado      tipos",
      "  ───────  ─────────  ────  ────────────  ────────  ──────────  ────────  ─────────  ──────────  ───────────",
      "  worker1  maquina-a  4242           100         3        1500         2   hace 2 s  activo      eco,esperar",
      "  w2       b             7             5         0           0         0  hace 11 s  apagándose  resumen",
    ].join("\n"),
  );
});

Deno.test("formatDeadLetters shows full ids, attempts, the error and when, dashes when unknown", () => {
  const entries: DeadLetterInfo[] = [
    {
      taskId: "0f8fad5b-d9cb-469f-a165-70867728950e",
      taskType: "sleep",
      attempt: 3,
      maxAttempts: 3,
      client: { name: "ana", kind: "web" },
      submittedAt: "2025-11-26T10:00:00.000Z",
      error: { code: "TIMEOUT", message: "La tarea superó su tiempo máximo" },
      deadAt: new Date(2025, 10, 26, 11, 0, 0).toISOString(),
    },
    {
      taskId: "x",
      taskType: "video",
      attempt: 1,
      maxAttempts: 5,
      client: { name: "b", kind: "cli" },
      submittedAt: "2025-11-26T10:00:00.000Z",
      error: null,
      deadAt: null,
    },
  ];
  const lines = formatDeadLetters(entries).split("\n");
  assert.equal(lines.length, 4);
  assert.match(lines[0] ?? "", /^ {2}id +tipo +intentos +error +cuándo$/);
  assert.match(
    lines[2] ?? "",
    /^ {2}0f8fad5b-d9cb-469f-a165-70867728950e {2}esperar +3\/3 {2}TIMEOUT: La tarea superó su tiempo máximo {2}2025-11-26 11:00:00 UTC[+-]?[\d:]*$/,
  );
  assert.match(lines[3] ?? "", /^ {2}x +video +1\/5 {2}— +—$/);
});

Deno.test("dlqLimit takes --limite or the fallback, from 1 to 1000", () => {
  assert.deepEqual(dlqLimit(undefined, 20), { ok: true, value: 20 });
  assert.deepEqual(dlqLimit(1000, 20), { ok: true, value: 1000 });
  assert.deepEqual(dlqLimit(undefined, 3), { ok: true, value: 3 });
  const bad = dlqLimit(1001, 20);
  assert.equal(bad.ok, false);
  assert.match(
    !bad.ok ? bad.message : "",
    /^--limite debe ser un entero de 1 a 500 \(historial\) o de 1 a 1000 \(dlq\), no «1001»$/,
  );
});

Deno.test("the menu offers cancel, history and workers after the existing entries", () => {
  assert.equal(parseMenuChoice("7"), "ping");
  assert.equal(parseMenuChoice("8"), "cancel");
  assert.equal(parseMenuChoice("9"), "history");
  assert.equal(parseMenuChoice("10"), "workers");
  assert.equal(parseMenuChoice("11"), undefined);
  assert.equal(parseMenuChoice("cancelar"), "cancel");
  assert.equal(parseMenuChoice("Historial"), "history");
  assert.equal(parseMenuChoice("workers"), "workers");
  const text = menuText();
  assert.match(text, /\n {3}8\) cancelar +Cancelar una tarea/);
  assert.match(text, /\n {2}10\) workers +Ver los workers vivos/);
  assert.match(text, /\n {3}0\) salir$/);
});
