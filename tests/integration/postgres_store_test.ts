/**
 * The PostgreSQL task store at `DATABASE_URL`: the conformance suite, each test in a schema of its own that
 * is dropped at its end, and what only this backend does (batch fallback, unreachable server).
 *
 * @module
 */
import assert from "node:assert/strict";
// @ts-types="@types/pg"
import pg from "pg";
import { ColmenaError } from "../../shared/errors.ts";
import type { NewTask, TaskStore } from "../../shared/ports.ts";
import { dropPostgresSchema, openPostgresTaskStore } from "../../server/stores/postgres.ts";
import { TASK_COLUMNS } from "../../server/stores/columns.ts";
import { readMigrations } from "../../server/stores/migrations.ts";
import { storeConformance } from "../conformance/task_store.ts";
import { DATABASE_URL, needsPostgres } from "../_helpers/services.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";

const postgres = await needsPostgres();

function uniqueSchema(): string {
  return `colmena_test_${crypto.randomUUID().replaceAll("-", "")}`;
}

/** Runs `run` with a store on a schema of its own, then closes the store and drops the schema. */
async function withStore(
  run: (store: TaskStore, schema: string) => Promise<void>,
): Promise<void> {
  const schema = uniqueSchema();
  try {
    const store = await openPostgresTaskStore(DATABASE_URL, { schema });
    try {
      await run(store, schema);
    } finally {
      await store.close();
    }
  } finally {
    await dropPostgresSchema(DATABASE_URL, schema);
  }
}

storeConformance("postgres store", async () => {
  const schema = uniqueSchema();
  const opened: TaskStore[] = [];
  async function open(): Promise<TaskStore> {
    const store = await openPostgresTaskStore(DATABASE_URL, { schema });
    opened.push(store);
    return store;
  }
  try {
    const store = await open();
    return {
      store,
      openAgain: open,
      async [Symbol.asyncDispose]() {
        try {
          for (const each of opened) await each.close();
        } finally {
          await dropPostgresSchema(DATABASE_URL, schema);
        }
      },
    };
  } catch (err) {
    await dropPostgresSchema(DATABASE_URL, schema);
    throw err;
  }
}, { ...postgres, persistent: true });

function task(taskId: string, priority = 1): NewTask {
  return {
    taskId,
    taskType: "text",
    priority,
    client: { name: "web-1", kind: "web" },
    submittedAt: "2025-01-01T00:00:00.000Z",
    origin: "s1",
    maxAttempts: 3,
    timeoutMs: 30_000,
  };
}

Deno.test({
  name:
    "postgres store: a write PostgreSQL refuses fails alone with STORE_UNAVAILABLE, the rest of its batch commits",
  ...postgres,
  async fn() {
    await withStore(async (store) => {
      // One INSERT carries the three; a priority beyond `integer` makes PostgreSQL refuse it.
      const [good, bad, other] = await Promise.allSettled([
        store.create(task("a")),
        store.create(task("b", 2 ** 40)),
        store.create(task("c")),
      ]);
      assert.deepEqual(good, { status: "fulfilled", value: { taskId: "a", created: true } });
      assert.deepEqual(other, { status: "fulfilled", value: { taskId: "c", created: true } });
      assert.equal(bad.status, "rejected");
      assert.ok(bad.reason instanceof ColmenaError && bad.reason.code === "STORE_UNAVAILABLE");
      assert.equal(await store.get("b"), undefined);
      assert.equal((await store.get("c"))?.status, "queued");
    });
  },
});

Deno.test({
  name:
    "postgres store: a refused statement in a pipelined batch rolls the batch back, and the rest commit alone",
  ...postgres,
  async fn() {
    await withStore(async (store) => {
      await store.create(task("started"));
      // BEGIN, the INSERT of the creates (refused: a priority beyond `integer`), the UPDATE of the start
      // and the upsert of the result travel together; the COMMIT behind the refusal answers ROLLBACK.
      const [good, bad, start, done] = await Promise.allSettled([
        store.create(task("a")),
        store.create(task("b", 2 ** 40)),
        store.markStarted({
          taskId: "started",
          origin: "s1",
          worker: "w1",
          startedAt: "2025-01-01T00:00:01.000Z",
          attempt: 1,
        }),
        store.complete({
          taskId: "orphan",
          taskType: "text",
          origin: "s1",
          status: "succeeded",
          output: null,
          worker: "w1",
          durationMs: 1,
          startedAt: "2025-01-01T00:00:01.000Z",
          finishedAt: "2025-01-01T00:00:02.000Z",
          attempt: 1,
        }),
      ]);
      assert.deepEqual(good, { status: "fulfilled", value: { taskId: "a", created: true } });
      assert.equal(bad.status, "rejected");
      assert.ok(bad.reason instanceof ColmenaError && bad.reason.code === "STORE_UNAVAILABLE");
      assert.deepEqual(start, { status: "fulfilled", value: undefined });
      assert.deepEqual(done, { status: "fulfilled", value: true });
      assert.equal(await store.get("b"), undefined);
      assert.equal((await store.get("started"))?.status, "running");
      assert.equal((await store.get("orphan"))?.status, "succeeded");
      // The connection is reused as it was: later batches commit.
      await store.create(task("c"));
      assert.equal((await store.get("c"))?.status, "queued");
    });
  },
});

Deno.test({
  name:
    "postgres store: text with quotes, backslashes, braces, commas, NULL and escapes goes through the JSON parameter intact",
  ...postgres,
  async fn() {
    await withStore(async (store) => {
      const awkward = [
        `"`,
        `\\`,
        `\\"`,
        "{a,b}",
        "NULL",
        "",
        " x ",
        "a,b",
        "ñ😀",
        "\n\t",
        "\\ud800",
        "\\u0000",
        "\u2028\u0001",
        "null",
      ];
      const tasks: NewTask[] = awkward.map((text, i) => ({
        ...task(`t${i}`),
        taskType: `tipo ${text}`,
        client: { name: text, kind: "cli" },
        payload: { text, list: [text, null, 1.5] },
        idempotencyKey: `clave ${text}`,
      }));
      // One batch: one INSERT whose records are one JSON parameter.
      const created = await Promise.all(tasks.map((each) => store.create(each)));
      assert.deepEqual(created, tasks.map((each) => ({ taskId: each.taskId, created: true })));
      const done = await Promise.all(awkward.map((text, i) =>
        store.complete({
          taskId: `t${i}`,
          taskType: `tipo ${text}`,
          origin: "s1",
          status: "failed",
          output: null,
          error: { code: "TASK_FAILED", message: text },
          worker: text,
          durationMs: -0.25,
          startedAt: "2025-01-01T00:00:01.000Z",
          finishedAt: "2025-01-01T00:00:02.000Z",
          attempt: 2,
        })
      ));
      assert.ok(done.every((each) => each));
      for (const [i, text] of awkward.entries()) {
        const submission = await store.submission(`t${i}`);
        assert.deepEqual(submission?.payload, { text, list: [text, null, 1.5] });
        assert.equal(submission?.client.name, text);
        assert.equal(submission?.idempotencyKey, `clave ${text}`);
        const view = await store.get(`t${i}`);
        assert.equal(view?.taskType, `tipo ${text}`);
        assert.equal(view?.worker, text);
        assert.deepEqual(view?.error, { code: "TASK_FAILED", message: text });
        assert.equal(view?.durationMs, -0.25);
      }
    });
  },
});

Deno.test({
  name:
    "postgres store: a create of a task id already recorded, in a batch with other writes, answers created false and the rest commit",
  ...postgres,
  async fn() {
    await withStore(async (store) => {
      assert.deepEqual(await store.create(task("t1", 1)), { taskId: "t1", created: true });
      // One turn, one batch: the creates without a key go in a plain INSERT, which the taken id makes fail;
      // the batch is then applied write by write.
      const [again, other, keyed, orphan] = await Promise.all([
        store.create(task("t1", 7)),
        store.create(task("t2")),
        store.create({ ...task("t3"), idempotencyKey: "k" }),
        store.complete({
          taskId: "t4",
          taskType: "text",
          origin: "s1",
          status: "succeeded",
          output: 1,
          worker: "w1",
          durationMs: 1,
          startedAt: "2025-01-01T00:00:01.000Z",
          finishedAt: "2025-01-01T00:00:02.000Z",
          attempt: 1,
        }),
      ]);
      assert.deepEqual(again, { taskId: "t1", created: false });
      assert.deepEqual(other, { taskId: "t2", created: true });
      assert.deepEqual(keyed, { taskId: "t3", created: true });
      assert.equal(orphan, true);
      assert.equal((await store.get("t1"))?.priority, 1);
      assert.equal((await store.get("t2"))?.status, "queued");
      assert.equal((await store.get("t4"))?.status, "succeeded");
      // Without a taken id, the creates of one batch all commit together.
      const many = await Promise.all(["u1", "u2", "u3"].map((id) => store.create(task(id))));
      assert.deepEqual(many.map((each) => each.created), [true, true, true]);
    });
  },
});

/** The result of `taskId`, as another server's consumer writes it. */
function resultOf(taskId: string) {
  return {
    taskId,
    taskType: "text",
    origin: "s1",
    status: "succeeded" as const,
    output: { text: "HOLA" },
    worker: "w9",
    durationMs: 2,
    startedAt: "2025-01-01T00:00:01.000Z",
    finishedAt: "2025-01-01T00:00:02.000Z",
    attempt: 1,
  };
}

Deno.test({
  name:
    "postgres store: a create without a key after its task's result (written first by another server) completes that record, keeps the result and answers created true, alone or in a batch",
  ...postgres,
  async fn() {
    await withStore(async (store) => {
      assert.equal(store.createCompletesOrphans, true);
      // Alone: one create, one statement.
      assert.equal(await store.complete(resultOf("o1")), true);
      assert.deepEqual(await store.create({ ...task("o1", 6), owner: "ana" }), {
        taskId: "o1",
        created: true,
      });
      // In a batch: the plain INSERT fails on the orphan, and the batch goes again with care.
      assert.equal(await store.complete(resultOf("o2")), true);
      const [o2, fresh] = await Promise.all([
        store.create({ ...task("o2", 4), owner: "ana" }),
        store.create({ ...task("o3"), owner: "ana" }),
      ]);
      assert.deepEqual(o2, { taskId: "o2", created: true });
      assert.deepEqual(fresh, { taskId: "o3", created: true });
      for (const [taskId, priority] of [["o1", 6], ["o2", 4]] as const) {
        const view = await store.get(taskId);
        assert.equal(view?.status, "succeeded", "the result stays");
        assert.deepEqual(view?.output, { text: "HOLA" });
        assert.equal(view?.worker, "w9");
        assert.equal(view?.priority, priority, "the task's own fields come in");
        assert.equal(view?.owner, "ana");
        assert.equal(view?.client.name, "web-1");
        const submission = await store.submission(taskId);
        assert.equal(submission?.submittedAt, "2025-01-01T00:00:00.000Z");
        assert.equal(submission?.maxAttempts, 3);
        assert.equal(submission?.timeoutMs, 30_000);
      }
      // A record that is no orphan is never overwritten: the create answers created false.
      assert.deepEqual(await store.create({ ...task("o3", 9), owner: "eva" }), {
        taskId: "o3",
        created: false,
      });
      assert.equal((await store.get("o3"))?.owner, "ana");
      assert.equal((await store.get("o3"))?.priority, 1);
    });
  },
});

Deno.test({
  name:
    "postgres store: a lone surrogate in text is kept as U+FFFD and its writes commit; times keep their milliseconds; a JSON null payload is not a missing one",
  ...postgres,
  async fn() {
    await withStore(async (store, schema) => {
      // PostgreSQL's JSON refuses the escape of a lone surrogate: a write that carried it would fail for ever.
      const created = await Promise.all([
        store.create({
          ...task("s1"),
          client: { name: "cli\ud800", kind: "cli" },
          submittedAt: "2025-01-01T00:00:00.123Z",
          payload: { text: "a\udc00b" },
        }),
        store.create({ ...task("s2"), submittedAt: "2025-01-01T00:00:00.999Z", payload: null }),
        store.create(task("s3")),
      ]);
      assert.deepEqual(created.map((each) => each.created), [true, true, true]);
      const done = await Promise.all(["s1", "s2"].map((taskId) =>
        store.complete({
          taskId,
          taskType: "text",
          origin: "s1",
          status: "failed",
          output: null,
          error: { code: "TASK_FAILED", message: "mal \ud83d" },
          worker: "w\udfff",
          durationMs: 0.5,
          startedAt: "2025-01-01T00:00:01.001Z",
          finishedAt: "2025-01-01T00:00:02.045Z",
          attempt: 1,
        })
      ));
      assert.deepEqual(done, [true, true]);
      const s1 = await store.submission("s1");
      assert.equal(s1?.client.name, "cli\ufffd");
      // The payload is JSON text: its escape of the lone surrogate is kept and reads back as it was.
      assert.deepEqual(s1?.payload, { text: "a\udc00b" });
      assert.equal(s1?.submittedAt, "2025-01-01T00:00:00.123Z");
      const view = await store.get("s1");
      assert.equal(view?.worker, "w\ufffd");
      assert.deepEqual(view?.error, { code: "TASK_FAILED", message: "mal \ufffd" });
      assert.equal(view?.startedAt, "2025-01-01T00:00:01.001Z");
      assert.equal(view?.finishedAt, "2025-01-01T00:00:02.045Z");
      assert.equal((await store.submission("s2"))?.submittedAt, "2025-01-01T00:00:00.999Z");
      const payloads = await withClient(async (client) =>
        (await client.query<{ taskId: string; payload: string | null }>(
          `SELECT task_id AS "taskId", payload::text AS payload FROM "${schema}".tasks
         WHERE task_id IN ('s2', 's3') ORDER BY task_id`,
        )).rows
      );
      assert.deepEqual(payloads, [
        { taskId: "s2", payload: "null" },
        { taskId: "s3", payload: null },
      ]);
    });
  },
});

Deno.test({
  name:
    "postgres store: connections cut under it fail its writes with STORE_UNAVAILABLE, without ending the process, and it recovers",
  ...postgres,
  async fn() {
    const schema = uniqueSchema();
    const target = new URL(DATABASE_URL);
    await using proxy = new TcpProxy({
      hostname: target.hostname,
      port: Number(target.port || 5432),
    });
    proxy.restore();
    const url = new URL(DATABASE_URL);
    url.hostname = "127.0.0.1";
    url.port = String(proxy.port);
    // An error event of a connection that nobody listens to would end a server; here it is caught and counted.
    const uncaught: unknown[] = [];
    const onUncaught = (event: ErrorEvent) => {
      event.preventDefault();
      uncaught.push(event.error);
    };
    globalThis.addEventListener("error", onUncaught);
    try {
      const store = await openPostgresTaskStore(url.href, { schema, connectTimeoutMs: 5_000 });
      try {
        // Batches one after another, then two in flight, so that the pool holds several connections.
        for (const id of ["a", "b", "c"]) await store.create(task(id));
        await Promise.all(["d", "e", "f", "g"].map((id) => store.create(task(id))));
        await proxy.cut();
        // The pool's connections are dead but not yet known to be: the writes go out on them and fail.
        const cut = await Promise.allSettled([store.create(task("h")), store.create(task("i"))]);
        for (const each of cut) {
          assert.equal(each.status, "rejected");
          assert.ok(
            each.reason instanceof ColmenaError && each.reason.code === "STORE_UNAVAILABLE",
          );
        }
        proxy.restore();
        assert.deepEqual(await store.create(task("j")), { taskId: "j", created: true });
        assert.equal((await store.get("a"))?.status, "queued");
      } finally {
        await store.close();
      }
      // The pool's dead connections report their end once their sockets close: let those events run.
      await new Promise((resolve) => setTimeout(resolve, 0));
      assert.deepEqual(uncaught, []);
    } finally {
      globalThis.removeEventListener("error", onUncaught);
      await dropPostgresSchema(DATABASE_URL, schema);
    }
  },
});

Deno.test("postgres store: a server that does not answer fails the opening with STORE_UNAVAILABLE", async () => {
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  await assert.rejects(
    openPostgresTaskStore("postgres://postgres@127.0.0.1:1/test", { connectTimeoutMs: 2_000 }),
    (err) => err instanceof ColmenaError && err.code === "STORE_UNAVAILABLE",
  );
});

Deno.test("postgres store: a schema name that is not a plain identifier is refused", async () => {
  await assert.rejects(
    openPostgresTaskStore(DATABASE_URL, { schema: 'x"; DROP TABLE tasks; --' }),
    RangeError,
  );
});

/** Runs `use` on a plain client of the test database. */
async function withClient<T>(use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

function appliedVersions(schema: string): Promise<number[]> {
  return withClient(async (client) => {
    const { rows } = await client.query<{ version: number }>(
      `SELECT version FROM "${schema}".colmena_migrations ORDER BY version`,
    );
    return rows.map((row) => row.version);
  });
}

Deno.test({
  name: "postgres store: a schema of the first version upgrades on opening and keeps its records",
  ...postgres,
  async fn() {
    const schema = uniqueSchema();
    const migrations = await readMigrations("postgres");
    try {
      await withClient(async (client) => {
        await client.query(`CREATE SCHEMA "${schema}"`);
        await client.query(
          `CREATE TABLE "${schema}".colmena_migrations (version integer PRIMARY KEY,
             name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
        );
        await client.query("BEGIN");
        await client.query(`SET LOCAL search_path TO "${schema}"`);
        await client.query(migrations[0]?.sql ?? "");
        await client.query("INSERT INTO colmena_migrations (version, name) VALUES (1, $1)", [
          migrations[0]?.name,
        ]);
        await client.query(
          `INSERT INTO tasks (task_id, task_type, status, priority, client_name, client_kind, origin,
             max_attempts, submitted_at) VALUES ('old', 'text', 'queued', 2, 'web-1', 'web', 's1', 3, now())`,
        );
        await client.query("COMMIT");
      });
      const store = await openPostgresTaskStore(DATABASE_URL, { schema });
      try {
        assert.equal((await store.get("old"))?.priority, 2);
        await store.create({ ...task("new"), fileRef: "uploads/f" });
        assert.deepEqual(await store.filesInUse(["uploads/f"]), new Set(["uploads/f"]));
      } finally {
        await store.close();
      }
      assert.deepEqual(await appliedVersions(schema), migrations.map((each) => each.version));
      await (await openPostgresTaskStore(DATABASE_URL, { schema })).close();
      assert.deepEqual(await appliedVersions(schema), migrations.map((each) => each.version));
    } finally {
      await dropPostgresSchema(DATABASE_URL, schema);
    }
  },
});

Deno.test({
  name: "postgres store: the migrated schema has exactly the columns of the column table",
  ...postgres,
  async fn() {
    const schema = uniqueSchema();
    try {
      await (await openPostgresTaskStore(DATABASE_URL, { schema })).close();
      const columns = await withClient(async (client) => {
        const { rows } = await client.query<{ name: string; type: string; nullable: boolean }>(
          `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
                  NOT a.attnotnull AS nullable
           FROM pg_attribute a
           WHERE a.attrelid = format('%I.tasks', $1::text)::regclass AND a.attnum > 0
             AND NOT a.attisdropped`,
          [schema],
        );
        return rows.map((row) => [row.name, row.type, row.nullable]);
      });
      const spelled: Record<string, string> = { timestamptz: "timestamp with time zone" };
      assert.deepEqual(
        columns.sort(),
        TASK_COLUMNS.map((each) => {
          const type = each.types.postgres;
          return [each.name, spelled[type] ?? type, each.nullable];
        }).sort(),
      );
    } finally {
      await dropPostgresSchema(DATABASE_URL, schema);
    }
  },
});
