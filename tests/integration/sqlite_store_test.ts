/**
 * The SQLite task store: the conformance suite, each test on its own file in a temporary folder, and what
 * only this backend does (its file, its failures).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { setImmediate } from "node:timers";
import { ColmenaError } from "../../shared/errors.ts";
import type { NewTask, TaskStore } from "../../shared/ports.ts";
import { openSqliteTaskStore } from "../../server/stores/sqlite.ts";
import { TASK_COLUMNS } from "../../server/stores/columns.ts";
import { readMigrations } from "../../server/stores/migrations.ts";
import { storeConformance } from "../conformance/task_store.ts";

for (
  const [name, options] of [
    ["sqlite store", {}],
    ["sqlite store (writer thread only)", { inlineBatch: 0 }],
    // As on a file system that refuses WAL: every COMMIT syncs on its own, on either thread.
    ["sqlite store (without WAL)", { wal: false }],
  ] as const
) {
  storeConformance(name, async () => {
    const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
    // A folder that does not exist yet: opening creates it, as it does the server's ./data.
    const path = join(dir, "data", "colmena.db");
    const opened: TaskStore[] = [];
    async function open(): Promise<TaskStore> {
      const store = await openSqliteTaskStore(path, options);
      opened.push(store);
      return store;
    }
    const store = await open();
    return {
      store,
      openAgain: open,
      async [Symbol.asyncDispose]() {
        try {
          for (const each of opened) await each.close();
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      },
    };
  }, { persistent: true });
}

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

for (
  const [where, options] of [["here", {}], ["in the writer thread", { inlineBatch: 0 }]] as const
) {
  Deno.test(`sqlite store: a write SQLite refuses ${where} fails alone with STORE_UNAVAILABLE, the rest of its batch commits`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
    try {
      const store = await openSqliteTaskStore(join(dir, "colmena.db"), options);
      try {
        // A fractional priority cannot go into the STRICT INTEGER column.
        const [good, bad, other] = await Promise.allSettled([
          store.create(task("a")),
          store.create(task("b", 1.5)),
          store.create(task("c")),
        ]);
        assert.deepEqual(good, { status: "fulfilled", value: { taskId: "a", created: true } });
        assert.deepEqual(other, { status: "fulfilled", value: { taskId: "c", created: true } });
        assert.equal(bad.status, "rejected");
        assert.ok(bad.reason instanceof ColmenaError && bad.reason.code === "STORE_UNAVAILABLE");
        assert.equal(await store.get("b"), undefined);
        assert.equal((await store.get("c"))?.status, "queued");
      } finally {
        await store.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (
  const [how, options] of [
    ["with batches in flight in the writer thread", { inlineBatch: 0 }],
    ["applied here, each answered after a sync of the WAL", {}],
  ] as const
) {
  Deno.test(`sqlite store: writes made in many turns, ${how}, apply and are answered in order`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
    try {
      const store = await openSqliteTaskStore(join(dir, "colmena.db"), options);
      const answered: string[] = [];
      try {
        // Each task's create, start and result go in three different turns, none awaited: batches follow
        // one another to the thread while earlier ones are still there. Out of order, a result would land
        // before its create (a record without its owner or payload) or a start after its result.
        const writes: Promise<unknown>[] = [];
        const ids = Array.from({ length: 60 }, (_, i) => `t${i}`);
        const turn = () => new Promise((resolve) => setImmediate(resolve));
        for (const id of ids) {
          writes.push(
            store.create({ ...task(id), owner: "ana", payload: { text: id } }).finally(() =>
              answered.push(`${id} create`)
            ),
          );
          await turn();
          writes.push(store.markStarted({
            taskId: id,
            worker: "w1",
            startedAt: "2025-01-01T00:00:01.000Z",
            attempt: 1,
            origin: "s1",
          }));
          await turn();
          writes.push(
            store.complete({
              taskId: id,
              taskType: "text",
              status: "succeeded",
              worker: "w1",
              startedAt: "2025-01-01T00:00:01.000Z",
              finishedAt: "2025-01-01T00:00:02.000Z",
              durationMs: 1000,
              attempt: 1,
              origin: "s1",
              output: { chars: id.length },
            }).finally(() => answered.push(`${id} result`)),
          );
        }
        const settled = await Promise.all(writes);
        // A result written in a later batch is never answered before the create of an earlier one.
        assert.deepEqual(answered, ids.flatMap((id) => [`${id} create`, `${id} result`]));
        for (let i = 0; i < ids.length; i++) {
          assert.deepEqual(settled[3 * i], { taskId: ids[i], created: true });
          assert.equal(settled[3 * i + 2], true, `${ids[i]}: its result is the first`);
          const view = await store.get(ids[i]!);
          assert.equal(view?.status, "succeeded");
          assert.equal(view?.owner, "ana");
          assert.deepEqual(view?.output, { chars: ids[i]!.length });
          assert.equal(view?.attempts, 1);
          assert.deepEqual((await store.submission(ids[i]!))?.payload, { text: ids[i] });
        }
      } finally {
        await store.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("sqlite store: a quiet write is answered only once its WAL file is synced: with that file gone, it fails with STORE_UNAVAILABLE", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
  try {
    const path = join(dir, "colmena.db");
    const store = await openSqliteTaskStore(path);
    try {
      // The connection that applies quiet batches commits without an fsync; the sync that must follow
      // cannot open the WAL any more, so nothing may be answered as stored.
      await Deno.remove(`${path}-wal`);
      await assert.rejects(
        store.create(task("a")),
        (err: unknown) => err instanceof ColmenaError && err.code === "STORE_UNAVAILABLE",
      );
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite store: without WAL, writes keep the rollback journal, are answered, and are there once reopened", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
  try {
    const path = join(dir, "colmena.db");
    const store = await openSqliteTaskStore(path, { wal: false });
    try {
      // A quiet write (applied on the calling thread) and a burst of them (sent to the writer thread).
      await store.create(task("a"));
      await Promise.all(Array.from({ length: 300 }, (_, i) => store.create(task(`b${i}`))));
      const db = new DatabaseSync(path);
      try {
        assert.equal(db.prepare("PRAGMA journal_mode").get()?.journal_mode, "delete");
      } finally {
        db.close();
      }
      await assert.rejects(Deno.stat(`${path}-wal`), Deno.errors.NotFound);
    } finally {
      await store.close();
    }
    const again = await openSqliteTaskStore(path, { wal: false });
    try {
      assert.equal((await again.get("a"))?.status, "queued");
      assert.equal((await again.get("b299"))?.status, "queued");
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite store: opening a path that cannot be a database fails with STORE_UNAVAILABLE", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
  try {
    await assert.rejects(
      openSqliteTaskStore(dir),
      (err) => err instanceof ColmenaError && err.code === "STORE_UNAVAILABLE",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Makes the database the server's first schema version left: migration 1 only, recorded as it recorded it. */
async function firstVersionDatabase(path: string): Promise<void> {
  const [first] = await readMigrations("sqlite");
  assert.ok(first !== undefined);
  const db = new DatabaseSync(path);
  try {
    db.exec(
      `CREATE TABLE colmena_migrations (
         version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`,
    );
    db.exec(first.sql);
    db.prepare("INSERT INTO colmena_migrations VALUES (1, 'tasks', ?)").run(
      new Date().toISOString(),
    );
    db.prepare(
      `INSERT INTO tasks (task_id, task_type, status, priority, client_name, client_kind, origin,
         max_attempts, submitted_at) VALUES ('old', 'text', 'queued', 2, 'web-1', 'web', 's1', 3, ?)`,
    ).run(Date.parse("2025-01-01T00:00:00.000Z"));
  } finally {
    db.close();
  }
}

function appliedVersions(path: string): number[] {
  const db = new DatabaseSync(path);
  try {
    return db.prepare("SELECT version FROM colmena_migrations ORDER BY version").all()
      .map((row) => Number(row.version));
  } finally {
    db.close();
  }
}

Deno.test("sqlite store: a database of the first schema version upgrades on opening and keeps its records", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
  try {
    const path = join(dir, "colmena.db");
    await firstVersionDatabase(path);
    const migrations = await readMigrations("sqlite");
    const store = await openSqliteTaskStore(path);
    try {
      assert.equal((await store.get("old"))?.priority, 2);
      // The file_ref column of migration 2 works: pruning gives the file of the pruned task.
      await store.create({ ...task("new"), fileRef: "uploads/f" });
      await store.complete({
        taskId: "new",
        taskType: "text",
        origin: "s1",
        status: "succeeded",
        worker: "w1",
        attempt: 1,
        startedAt: "2025-01-01T00:00:01.000Z",
        finishedAt: "2025-01-01T00:00:02.000Z",
        durationMs: 1,
        output: null,
      });
      assert.deepEqual(await store.filesInUse(["uploads/f"]), new Set(["uploads/f"]));
      assert.deepEqual(await store.prune("2025-01-02T00:00:00.000Z", 10), {
        removed: 1,
        blobKeys: ["uploads/f"],
      });
    } finally {
      await store.close();
    }
    assert.deepEqual(appliedVersions(path), migrations.map((each) => each.version));
    // Opening again applies nothing twice.
    await (await openSqliteTaskStore(path)).close();
    assert.deepEqual(appliedVersions(path), migrations.map((each) => each.version));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite store: the migrated schema has exactly the columns of the column table", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
  try {
    const path = join(dir, "colmena.db");
    await (await openSqliteTaskStore(path)).close();
    const db = new DatabaseSync(path);
    try {
      const columns = db.prepare("SELECT name, type, \"notnull\" FROM pragma_table_info('tasks')")
        .all()
        .map((row) => [row.name, row.type, row.notnull === 0]);
      assert.deepEqual(
        columns.sort(),
        TASK_COLUMNS.map((each) => [each.name, each.types.sqlite, each.nullable]).sort(),
      );
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
