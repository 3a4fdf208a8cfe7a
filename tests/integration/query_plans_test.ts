/**
 * The SQL stores' statements use an index, so that `list`, retention and the writes stay fast on a big
 * table: each statement the stores run is planned (EXPLAIN) on the schema their migrations leave, and the
 * plan must name the index meant for it and read no table in full.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
// @ts-types="@types/pg"
import pg from "pg";
import type { TaskQuery } from "../../shared/ports.ts";
import { listStatement, openSqliteTaskStore, WRITE_SQL } from "../../server/stores/sqlite.ts";
import {
  dropPostgresSchema,
  listStatement as postgresListStatement,
  openPostgresTaskStore,
  pruneSql,
} from "../../server/stores/postgres.ts";
import { encodeCursor } from "../../server/stores/records.ts";
import { DATABASE_URL, needsPostgres } from "../_helpers/services.ts";

/** The `list` queries the server makes (a page of 50), each with the index it must use. */
const LISTS: { name: string; query: Omit<TaskQuery, "limit">; index: string }[] = [
  { name: "newest first (dashboard, historial)", query: {}, index: "tasks_submitted" },
  {
    name: "the failed ones (dashboard)",
    query: { statuses: ["failed"] },
    index: "tasks_status_submitted",
  },
  { name: "one owner's (every principal but admins)", query: { owner: "o" }, index: "tasks_owner" },
  {
    name: "one owner's, by status",
    query: { owner: "o", statuses: ["queued", "running"] },
    index: "tasks_",
  },
  { name: "by task type", query: { taskType: "echo" }, index: "tasks_submitted" },
  { name: "by client name", query: { clientName: "c" }, index: "tasks_submitted" },
  { name: "by client kind", query: { clientKind: "web" }, index: "tasks_submitted" },
  {
    name: "a time window",
    query: { since: "2025-01-01T00:00:00.000Z", until: "2025-02-01T00:00:00.000Z" },
    index: "tasks_submitted",
  },
];

/** A cursor as `list` makes it, to page from. */
const CURSOR = encodeCursor({ submittedAt: Date.parse("2025-01-01T00:00:00.000Z"), taskId: "t-1" });

Deno.test("sqlite store: every statement uses an index, list and prune the ones meant for them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-plans-" });
  try {
    const path = join(dir, "colmena.db");
    await (await openSqliteTaskStore(path)).close();
    const db = new DatabaseSync(path);
    try {
      const plan = (sql: string) =>
        db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((row) => String(row.detail));
      const noFullScan = (name: string, lines: string[]) => {
        for (const line of lines) {
          assert.doesNotMatch(line, /^SCAN tasks$/, `${name} reads the whole table: ${lines}`);
        }
      };
      for (const { name, query, index } of LISTS) {
        for (const paged of [false, true]) {
          const lines = plan(
            listStatement({ ...query, limit: 50, ...(paged ? { cursor: CURSOR } : {}) }).sql,
          );
          noFullScan(name, lines);
          assert.ok(
            lines.some((line) => line.includes(`INDEX ${index}`)),
            `list ${name}${paged ? " (next page)" : ""}: ${lines.join("; ")}`,
          );
          // A page never sorts the whole table: at most the rows that tie on submitted_at.
          if (query.statuses === undefined || query.statuses.length === 1) {
            assert.ok(
              !lines.includes("USE TEMP B-TREE FOR ORDER BY"),
              `list ${name} sorts: ${lines.join("; ")}`,
            );
          }
        }
      }
      const prune = plan(WRITE_SQL.prune);
      assert.ok(prune.some((line) => line.includes("INDEX tasks_finished")), prune.join("; "));
      assert.ok(!prune.some((line) => line.includes("TEMP B-TREE")), prune.join("; "));
      assert.ok(
        plan(WRITE_SQL.findByKey).some((line) => line.includes("INDEX tasks_idempotency")),
      );
      assert.ok(plan(WRITE_SQL.fileInUse).some((line) => line.includes("INDEX tasks_file_ref")));
      for (
        const name of [
          "markStarted",
          "markRetrying",
          "finish",
          "cancel",
          "reopen",
          "remove",
        ] as const
      ) {
        const lines = plan(WRITE_SQL[name]);
        assert.ok(
          lines.some((line) => line.includes("INDEX sqlite_autoindex_tasks_1 (task_id=?)")),
          `${name}: ${lines.join("; ")}`,
        );
      }
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const postgres = await needsPostgres();

Deno.test({
  name: "postgres store: list and prune use the index meant for them",
  ...postgres,
  async fn() {
    const schema = `colmena_test_${crypto.randomUUID().replaceAll("-", "")}`;
    try {
      await (await openPostgresTaskStore(DATABASE_URL, { schema })).close();
      const client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
      try {
        // An empty table is cheapest to read in full; with that option off the planner shows which index
        // it would take on a big one.
        await client.query("SET enable_seqscan = off");
        const table = `"${schema}".tasks`;
        const plan = async (text: string, values: unknown[]) => {
          const { rows } = await client.query<{ "QUERY PLAN": string }>(
            `EXPLAIN ${text}`,
            values,
          );
          return rows.map((row) => row["QUERY PLAN"]).join("\n");
        };
        for (const { name, query, index } of LISTS) {
          const { text, values } = postgresListStatement(table, { ...query, limit: 50 });
          const lines = await plan(text, values);
          assert.doesNotMatch(lines, /Seq Scan/, `list ${name}: ${lines}`);
          assert.match(lines, new RegExp(`Index.* (using|on) ${index}`), `list ${name}: ${lines}`);
        }
        await client.query("BEGIN");
        const prune = await plan(pruneSql(table), [new Date().toISOString(), 1000]);
        await client.query("ROLLBACK");
        assert.match(prune, /Index.* (using|on) tasks_finished/, prune);
      } finally {
        await client.end();
      }
    } finally {
      await dropPostgresSchema(DATABASE_URL, schema);
    }
  },
});
