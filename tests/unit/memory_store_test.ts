/**
 * Unit tests of `server/stores/memory.ts` beyond the task store conformance suite
 * (tests/integration/memory_store_test.ts): its bound on the number of records.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import type { NewTask } from "../../shared/ports.ts";
import type { ResultMessage, StartedNotice } from "../../shared/queue_messages.ts";

function task(taskId: string): NewTask {
  return {
    taskId,
    taskType: "text",
    priority: 3,
    client: { name: "web-1", kind: "web" },
    submittedAt: "2025-01-01T00:00:00.000Z",
    origin: "s1",
    maxAttempts: 3,
    timeoutMs: 30_000,
  };
}

function started(taskId: string): StartedNotice {
  return { taskId, origin: "s1", worker: "w1", startedAt: "2025-01-01T00:00:01.000Z", attempt: 1 };
}

function result(taskId: string): ResultMessage {
  return {
    taskId,
    taskType: "text",
    origin: "s1",
    status: "succeeded",
    output: { words: 1, reversed: "a", upper: "A" },
    worker: "w1",
    durationMs: 12,
    startedAt: "2025-01-01T00:00:01.000Z",
    finishedAt: "2025-01-01T00:00:01.012Z",
    attempt: 1,
  };
}

Deno.test("MemoryTaskStore keeps every record while at maxTasks", async () => {
  const store = new MemoryTaskStore(3);
  for (const id of ["t1", "t2", "t3"]) {
    await store.create(task(id));
    await store.complete(result(id));
  }
  assert.equal(store.size, 3);
  for (const id of ["t1", "t2", "t3"]) assert.ok(await store.get(id), id);
});

Deno.test("MemoryTaskStore drops the oldest final records and keeps unfinished ones when over maxTasks", async () => {
  const store = new MemoryTaskStore(4);
  for (const id of ["t1", "t2", "t3", "t4"]) await store.create(task(id));
  await store.markStarted(started("t2"));
  await store.complete(result("t3"));
  await store.cancel("t4");
  await store.create(task("t5"));
  assert.ok(store.size <= 4, `size ${store.size}`);
  assert.equal((await store.get("t1"))?.status, "queued");
  assert.equal((await store.get("t2"))?.status, "running");
  assert.equal(await store.get("t3"), undefined);
  assert.equal((await store.get("t5"))?.status, "queued");
});

Deno.test("MemoryTaskStore evicts final records oldest first", async () => {
  const store = new MemoryTaskStore(100);
  for (let i = 0; i < 100; i++) {
    await store.create(task(`t${i}`));
    await store.complete(result(`t${i}`));
  }
  await store.create(task("nueva"));
  assert.ok(store.size <= 100, `size ${store.size}`);
  assert.equal(await store.get("t0"), undefined);
  assert.ok(await store.get("t99"));
  assert.ok(await store.get("nueva"));
  // Whatever was dropped is a prefix of the insertion order.
  let firstKept = 0;
  while (await store.get(`t${firstKept}`) === undefined) firstKept++;
  for (let i = firstKept; i < 100; i++) assert.ok(await store.get(`t${i}`), `t${i}`);
});

Deno.test("MemoryTaskStore never drops unfinished records, even past maxTasks", async () => {
  const store = new MemoryTaskStore(2);
  for (const id of ["t1", "t2", "t3", "t4"]) await store.create(task(id));
  await store.markStarted(started("t2"));
  assert.equal(store.size, 4);
  for (const id of ["t1", "t2", "t3", "t4"]) assert.ok(await store.get(id), id);
});

Deno.test("MemoryTaskStore frees the idempotency key of an evicted record", async () => {
  const store = new MemoryTaskStore(1);
  await store.create({ ...task("t1"), idempotencyKey: "clave" });
  await store.complete(result("t1"));
  await store.create(task("t2"));
  assert.equal(await store.get("t1"), undefined);
  assert.deepEqual(await store.create({ ...task("t3"), idempotencyKey: "clave" }), {
    taskId: "t3",
    created: true,
  });
});
