/**
 * The SQLite store's results written alone: a batch of `complete`s with no other write waits a moment for
 * one (to share its COMMIT), and is still committed when none comes, or when the store closes first.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { NewTask } from "../../shared/ports.ts";
import type { ResultMessage } from "../../shared/queue_messages.ts";
import { openSqliteTaskStore } from "../../server/stores/sqlite.ts";

function newTask(taskId: string): NewTask {
  return {
    taskId,
    taskType: "echo",
    priority: 3,
    client: { name: "t", kind: "cli" },
    submittedAt: new Date().toISOString(),
    origin: "s1",
    payload: { message: "hola" },
    maxAttempts: 3,
    timeoutMs: 30_000,
  };
}

function result(taskId: string): ResultMessage {
  const now = new Date().toISOString();
  return {
    taskId,
    taskType: "echo",
    origin: "s1",
    status: "succeeded",
    output: { message: "hola" },
    worker: "w1",
    durationMs: 1,
    startedAt: now,
    finishedAt: now,
    attempt: 1,
  };
}

for (
  const [name, options] of [["inline", {}], ["writer thread only", { inlineBatch: 0 }]] as const
) {
  Deno.test(`sqlite store (${name}): a result written alone is committed with no other write`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-result-" });
    try {
      const store = await openSqliteTaskStore(join(dir, "colmena.db"), options);
      try {
        await store.create(newTask("a1"));
        assert.equal(await store.complete(result("a1")), true);
        assert.equal((await store.get("a1"))?.status, "succeeded");
      } finally {
        await store.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`sqlite store (${name}): a result still waiting when the store closes is written`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-result-" });
    const path = join(dir, "colmena.db");
    try {
      const store = await openSqliteTaskStore(path, options);
      await store.create(newTask("b1"));
      const completed = store.complete(result("b1"));
      await store.close();
      assert.equal(await completed, true);
      const again = await openSqliteTaskStore(path, options);
      try {
        assert.equal((await again.get("b1"))?.status, "succeeded");
      } finally {
        await again.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`sqlite store (${name}): a result and a write after it keep their order`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "colmena-sqlite-result-" });
    try {
      const store = await openSqliteTaskStore(join(dir, "colmena.db"), options);
      try {
        await store.create(newTask("c1"));
        const completed = store.complete(result("c1"));
        // A later write of the same task (a cancel) lands after the result: too late.
        await new Promise((resolve) => setTimeout(resolve, 0));
        const cancelled = store.cancel("c1");
        assert.equal(await completed, true);
        assert.equal(await cancelled, "too_late");
        assert.equal((await store.get("c1"))?.status, "succeeded");
      } finally {
        await store.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
