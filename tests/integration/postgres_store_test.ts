/**
 * The PostgreSQL task store at `DATABASE_URL`: the conformance suite, each test in a schema of its own that
 * is dropped at its end, and what only this backend does (batch fallback, unreachable server).
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import type { NewTask, TaskStore } from "../../shared/ports.ts";
import { dropPostgresSchema, openPostgresTaskStore } from "../../server/stores/postgres.ts";
import { storeConformance } from "../conformance/task_store.ts";
import { DATABASE_URL, needsPostgres } from "../_helpers/services.ts";

const postgres = await needsPostgres();

function uniqueSchema(): string {
  return `colmena_test_${crypto.randomUUID().replaceAll("-", "")}`;
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
    const schema = uniqueSchema();
    try {
      const store = await openPostgresTaskStore(DATABASE_URL, { schema });
      try {
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
      } finally {
        await store.close();
      }
    } finally {
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
