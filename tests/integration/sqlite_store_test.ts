/**
 * The SQLite task store: the conformance suite, each test on its own file in a temporary folder, and what
 * only this backend does (its file, its failures).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ColmenaError } from "../../shared/errors.ts";
import type { NewTask, TaskStore } from "../../shared/ports.ts";
import { openSqliteTaskStore } from "../../server/stores/sqlite.ts";
import { storeConformance } from "../conformance/task_store.ts";

storeConformance("sqlite store", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
  // A folder that does not exist yet: opening creates it, as it does the server's ./data.
  const path = join(dir, "data", "colmena.db");
  const opened: TaskStore[] = [];
  async function open(): Promise<TaskStore> {
    const store = await openSqliteTaskStore(path);
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

Deno.test("sqlite store: a write SQLite refuses fails alone with STORE_UNAVAILABLE, the rest of its batch commits", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-" });
  try {
    const store = await openSqliteTaskStore(join(dir, "colmena.db"));
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
