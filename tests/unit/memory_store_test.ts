/**
 * Unit tests of `server/memory_store.ts`: the bounded in-memory task store.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MemoryTaskStore } from "../../server/memory_store.ts";
import type { TaskView } from "../../shared/protocol.ts";
import type { ResultMessage, StartedNotice } from "../../shared/queue_messages.ts";

function queued(taskId: string): TaskView {
  return {
    taskId,
    taskType: "text",
    status: "queued",
    priority: 3,
    client: { name: "web-1", kind: "web" },
    submittedAt: "2025-01-01T00:00:00.000Z",
  };
}

function started(taskId: string, worker = "w1"): StartedNotice {
  return { taskId, origin: "s1", worker, startedAt: "2025-01-01T00:00:01.000Z" };
}

function result(taskId: string, overrides: Partial<ResultMessage> = {}): ResultMessage {
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
    ...overrides,
  };
}

Deno.test("MemoryTaskStore.get returns a created record", () => {
  const store = new MemoryTaskStore();
  store.create(queued("t1"));
  assert.deepEqual(store.get("t1"), queued("t1"));
  assert.equal(store.size, 1);
});

Deno.test("MemoryTaskStore.get returns undefined for an unknown task", () => {
  const store = new MemoryTaskStore();
  assert.equal(store.get("nope"), undefined);
  assert.equal(store.get("toString"), undefined);
});

Deno.test("MemoryTaskStore.markStarted marks a queued task running on its worker", () => {
  const store = new MemoryTaskStore();
  store.create(queued("t1"));
  store.markStarted(started("t1", "obrera"));
  const view = store.get("t1");
  assert.equal(view?.status, "running");
  assert.equal(view?.worker, "obrera");
  assert.equal(view?.startedAt, "2025-01-01T00:00:01.000Z");
});

Deno.test("MemoryTaskStore.markStarted ignores an unknown task", () => {
  const store = new MemoryTaskStore();
  store.markStarted(started("t1"));
  assert.equal(store.get("t1"), undefined);
  assert.equal(store.size, 0);
});

Deno.test("MemoryTaskStore.markStarted is ignored after the task is final", () => {
  const store = new MemoryTaskStore();
  store.create(queued("t1"));
  assert.equal(store.complete(result("t1", { worker: "w1" })), true);
  store.markStarted({ ...started("t1", "w2"), startedAt: "2025-01-01T00:05:00.000Z" });
  const view = store.get("t1");
  assert.equal(view?.status, "succeeded");
  assert.equal(view?.worker, "w1");
  assert.equal(view?.startedAt, "2025-01-01T00:00:01.000Z");
});

Deno.test("MemoryTaskStore.complete records the end of a task and returns true", () => {
  const store = new MemoryTaskStore();
  store.create(queued("t1"));
  store.markStarted(started("t1"));
  assert.equal(store.complete(result("t1")), true);
  assert.deepEqual(store.get("t1"), {
    ...queued("t1"),
    status: "succeeded",
    worker: "w1",
    startedAt: "2025-01-01T00:00:01.000Z",
    finishedAt: "2025-01-01T00:00:01.012Z",
    durationMs: 12,
    output: { words: 1, reversed: "a", upper: "A" },
  });
});

Deno.test("MemoryTaskStore.complete records a failure with its wire error", () => {
  const store = new MemoryTaskStore();
  store.create(queued("t1"));
  const error = { code: "TIMEOUT", message: "La tarea superó su tiempo máximo" } as const;
  assert.equal(store.complete(result("t1", { status: "failed", output: undefined, error })), true);
  const view = store.get("t1");
  assert.equal(view?.status, "failed");
  assert.deepEqual(view?.error, error);
  assert.equal("output" in (view ?? {}), false);
});

Deno.test("MemoryTaskStore.complete returns false for a duplicate and keeps the first result", () => {
  const store = new MemoryTaskStore();
  store.create(queued("t1"));
  assert.equal(store.complete(result("t1", { worker: "w1", output: { first: true } })), true);
  assert.equal(store.complete(result("t1", { worker: "w2", output: { first: false } })), false);
  assert.equal(store.complete(result("t1", { status: "failed" })), false);
  const view = store.get("t1");
  assert.equal(view?.status, "succeeded");
  assert.equal(view?.worker, "w1");
  assert.deepEqual(view?.output, { first: true });
});

Deno.test("MemoryTaskStore.complete for an unknown task creates its record", () => {
  const store = new MemoryTaskStore();
  assert.equal(store.complete(result("huerfana", { taskType: "echo", worker: "w9" })), true);
  assert.equal(store.size, 1);
  const view = store.get("huerfana");
  assert.ok(view);
  assert.equal(view.taskId, "huerfana");
  assert.equal(view.taskType, "echo");
  assert.equal(view.status, "succeeded");
  assert.equal(view.worker, "w9");
  assert.equal(view.finishedAt, "2025-01-01T00:00:01.012Z");
  assert.equal(view.submittedAt, "2025-01-01T00:00:01.000Z");
  assert.deepEqual(view.client, { name: "desconocido", kind: "cli" });
  assert.equal(store.complete(result("huerfana")), false);
});

Deno.test("MemoryTaskStore.remove forgets a task", () => {
  const store = new MemoryTaskStore();
  store.create(queued("t1"));
  store.create(queued("t2"));
  store.remove("t1");
  assert.equal(store.get("t1"), undefined);
  assert.ok(store.get("t2"));
  assert.equal(store.size, 1);
  store.remove("no-existe");
  assert.equal(store.size, 1);
});

Deno.test("MemoryTaskStore keeps every record while at maxTasks", () => {
  const store = new MemoryTaskStore(3);
  for (const id of ["t1", "t2", "t3"]) {
    store.create(queued(id));
    store.complete(result(id));
  }
  assert.equal(store.size, 3);
  for (const id of ["t1", "t2", "t3"]) assert.ok(store.get(id), id);
});

Deno.test("MemoryTaskStore drops the oldest finished records and keeps unfinished ones when over maxTasks", () => {
  const store = new MemoryTaskStore(4);
  for (const id of ["t1", "t2", "t3", "t4"]) store.create(queued(id));
  store.markStarted(started("t2"));
  store.complete(result("t3"));
  store.complete(result("t4"));
  store.create(queued("t5"));
  assert.ok(store.size <= 4, `size ${store.size}`);
  assert.equal(store.get("t1")?.status, "queued");
  assert.equal(store.get("t2")?.status, "running");
  assert.equal(store.get("t3"), undefined);
  assert.equal(store.get("t5")?.status, "queued");
});

Deno.test("MemoryTaskStore evicts finished records oldest first", () => {
  const store = new MemoryTaskStore(100);
  for (let i = 0; i < 100; i++) {
    store.create(queued(`t${i}`));
    store.complete(result(`t${i}`));
  }
  store.create(queued("nueva"));
  assert.ok(store.size <= 100, `size ${store.size}`);
  assert.equal(store.get("t0"), undefined);
  assert.ok(store.get("t99"));
  assert.ok(store.get("nueva"));
  // Whatever was dropped is a prefix of the insertion order.
  let firstKept = 0;
  while (store.get(`t${firstKept}`) === undefined) firstKept++;
  for (let i = firstKept; i < 100; i++) assert.ok(store.get(`t${i}`), `t${i}`);
});

Deno.test("MemoryTaskStore never drops unfinished records, even past maxTasks", () => {
  const store = new MemoryTaskStore(2);
  for (const id of ["t1", "t2", "t3", "t4"]) store.create(queued(id));
  store.markStarted(started("t2"));
  assert.equal(store.size, 4);
  for (const id of ["t1", "t2", "t3", "t4"]) assert.ok(store.get(id), id);
});
