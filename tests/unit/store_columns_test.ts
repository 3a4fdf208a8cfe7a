/**
 * Unit tests of `server/stores/columns.ts`: the one table both SQL stores generate their column lists and
 * row mapping from, and the SQLite store's cells of a new task made without its record.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type Cell,
  COLUMN_NAMES,
  JSON_KEYS,
  recordCells,
  recordFromRow,
  recordsJson,
  selectList,
  selectRecordset,
  TASK_COLUMNS,
} from "../../server/stores/columns.ts";
import { newTaskRecord, type TaskRecord } from "../../server/stores/records.ts";
import { pushNewTaskCells } from "../../server/stores/sqlite.ts";
import type { NewTask } from "../../shared/ports.ts";

const RECORD: TaskRecord = {
  taskId: "t-1",
  taskType: "text",
  status: "succeeded",
  priority: 4,
  clientName: "web-1",
  clientKind: "web",
  origin: "srv-1",
  payload: '{"text":"hola"}',
  payloadRef: null,
  fileRef: "uploads/f",
  output: "null",
  outputRef: null,
  errorCode: null,
  errorMessage: null,
  attempts: 1,
  maxAttempts: 3,
  timeoutMs: 30_000,
  worker: "w1",
  durationMs: 12.5,
  submittedAt: Date.parse("2025-01-01T00:00:00.000Z"),
  startedAt: Date.parse("2025-01-01T00:00:01.000Z"),
  finishedAt: Date.parse("2025-01-01T00:00:02.000Z"),
  idempotencyKey: null,
  owner: "web-1",
  publishedAt: 1_767_225_600_000,
};

Deno.test("every task column has its own name and field, named as the field in snake_case", () => {
  assert.equal(new Set(TASK_COLUMNS.map((each) => each.name)).size, TASK_COLUMNS.length);
  assert.equal(new Set(TASK_COLUMNS.map((each) => each.field)).size, TASK_COLUMNS.length);
  for (const each of TASK_COLUMNS) {
    assert.equal(each.name, each.field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
  }
  assert.equal(COLUMN_NAMES.split(", ").length, TASK_COLUMNS.length);
});

Deno.test("a record read back from SQLite cells is the record, but for the payload it never shows", () => {
  const cells = recordCells(RECORD, "sqlite");
  const row = Object.fromEntries(
    TASK_COLUMNS.map((each, i) => [each.name, each.readBack ? cells[i] : null]),
  );
  assert.deepEqual(recordFromRow(row, "sqlite"), { ...RECORD, payload: null });
  assert.match(selectList("sqlite"), /NULL AS payload/);
});

Deno.test("PostgreSQL cells carry times as ISO text and read them back from dates", () => {
  const cells = recordCells(RECORD, "postgres");
  const submitted = TASK_COLUMNS.findIndex((each) => each.name === "submitted_at");
  assert.equal(cells[submitted], "2025-01-01T00:00:00.000Z");
  const row = Object.fromEntries(TASK_COLUMNS.map((each, i) => {
    const cell = cells[i] ?? null;
    const isTime = each.types.postgres === "timestamptz" && cell !== null;
    return [each.name, !each.readBack ? null : isTime ? new Date(cell) : cell];
  }));
  assert.deepEqual(recordFromRow(row, "postgres"), { ...RECORD, payload: null });
  assert.match(selectList("postgres"), /output::text AS output/);
});

Deno.test("a row with a value of the wrong kind or a NULL where none may be is a TypeError", () => {
  const cells = recordCells(RECORD, "sqlite");
  const row = Object.fromEntries(TASK_COLUMNS.map((each, i) => [each.name, cells[i]]));
  assert.throws(() => recordFromRow({ ...row, priority: "4" }, "sqlite"), TypeError);
  assert.throws(() => recordFromRow({ ...row, task_type: null }, "sqlite"), TypeError);
  assert.throws(() => recordFromRow({ ...row, status: "lost" }, "sqlite"), TypeError);
});

Deno.test("records travel to PostgreSQL as one JSON array keyed by column place, times in milliseconds", () => {
  const sent = JSON.parse(recordsJson([RECORD, RECORD])) as Record<string, unknown>[];
  // A null field is left out (it reads as NULL); every other field is there as it is, under its column's
  // place in the table, in base 36.
  const keyed = Object.fromEntries(
    TASK_COLUMNS.flatMap((each, i) =>
      RECORD[each.field] === null ? [] : [[i.toString(36), RECORD[each.field]]]
    ),
  );
  assert.deepEqual(sent, [keyed, keyed]);
  const key = (field: keyof TaskRecord) => JSON_KEYS.get(field)!;
  assert.equal(key("taskId"), "0");
  assert.ok(!(key("payloadRef") in (sent[0] ?? {})));
  assert.equal(sent[0]?.[key("output")], "null");
  const sql = selectRecordset("$1::json");
  assert.match(sql, /FROM json_to_recordset\(\$1::json\) AS r\(/);
  // JSON text travels as a JSON string, so that a JSON null stays apart from no value.
  assert.ok(sql.includes(`r."${key("output")}"::json AS output`), sql);
  assert.ok(sql.includes(`"${key("output")}" text`), sql);
  assert.ok(sql.includes(`to_timestamp(r."${key("submittedAt")}" / 1000) AS submitted_at`), sql);
  assert.ok(sql.includes(`"${key("submittedAt")}" double precision`), sql);
  assert.equal(sql.split(" FROM ")[0]?.split(", ").length, TASK_COLUMNS.length);
});

Deno.test("a lone surrogate, which PostgreSQL's JSON refuses, travels as U+FFFD; other text as it is", () => {
  const key = (field: keyof TaskRecord) => JSON_KEYS.get(field)!;
  const odd = { ...RECORD, worker: "a\ud800b", errorMessage: "\udc00", clientName: "x\\ud800" };
  const [sent] = JSON.parse(recordsJson([odd])) as Record<string, unknown>[];
  assert.equal(sent?.[key("worker")], "a\ufffdb");
  assert.equal(sent?.[key("errorMessage")], "\ufffd");
  // A backslash before "ud" is not a surrogate: it stays.
  assert.equal(sent?.[key("clientName")], "x\\ud800");
  assert.equal(sent?.[key("payload")], RECORD.payload);
  const pair = { ...RECORD, worker: "😀" };
  const [paired] = JSON.parse(recordsJson([pair])) as Record<string, unknown>[];
  assert.equal(paired?.[key("worker")], "😀");
});

Deno.test("the SQLite cells of a new task, made without its record, are those of its record", () => {
  const base: NewTask = {
    taskId: "t-2",
    taskType: "echo",
    priority: 2,
    client: { name: "cli\u0000ente", kind: "mobile" },
    submittedAt: "2025-01-01T00:00:00.123Z",
    origin: "srv-1",
    payload: { message: "hola" },
    maxAttempts: 3,
    timeoutMs: 5_000,
  };
  const tasks: NewTask[] = [
    base,
    { ...base, idempotencyKey: "k\u00001", owner: "dueño" },
    { ...base, payload: undefined, payloadRef: "payloads/t-2", fileRef: "uploads/f" },
    { ...base, payload: null },
  ];
  const cells: Cell[] = [];
  for (const task of tasks) pushNewTaskCells(cells, task);
  assert.deepEqual(cells, tasks.flatMap((task) => recordCells(newTaskRecord(task), "sqlite")));
});
