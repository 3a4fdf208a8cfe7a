/**
 * Read-your-results when a result's write fails: the reads of that task wait for the broker's copy to be
 * written, instead of showing the task running after its result was pushed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { PendingResultsStore } from "../../server/pending_results.ts";
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import { ColmenaError } from "../../shared/errors.ts";
import type { NewTask, TaskStore } from "../../shared/ports.ts";
import type { ResultMessage } from "../../shared/queue_messages.ts";

function newTask(taskId: string): NewTask {
  return {
    taskId,
    taskType: "echo",
    priority: 0,
    client: { name: "web-1", kind: "web" },
    submittedAt: "2026-12-03T10:00:00.000Z",
    origin: "s1",
    payload: { message: "hola" },
    maxAttempts: 3,
    timeoutMs: 30_000,
  };
}

function result(taskId: string): ResultMessage {
  return {
    taskId,
    taskType: "echo",
    origin: "s1",
    status: "succeeded",
    output: { message: "hola" },
    worker: "w1",
    durationMs: 1,
    startedAt: "2026-12-03T10:00:00.010Z",
    finishedAt: "2026-12-03T10:00:00.011Z",
    attempt: 1,
  };
}

/** The memory store, whose first `complete` fails as a store cut mid-COMMIT would. */
function failingOnce(store: TaskStore): TaskStore {
  let failed = false;
  return new Proxy(store, {
    get(target, name, receiver) {
      if (name === "complete" && !failed) {
        return () => {
          failed = true;
          return Promise.reject(new ColmenaError("STORE_UNAVAILABLE"));
        };
      }
      const value = Reflect.get(target, name, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("pending results: after a result's write fails, a read of its task waits for the copy the broker delivers again", async () => {
  const store = new PendingResultsStore(failingOnce(new MemoryTaskStore()));
  await store.create(newTask("t1"));
  await assert.rejects(store.complete(result("t1")));
  let read: string | undefined;
  const reading = store.get("t1").then((view) => (read = view?.status));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(read, undefined, "the read waits while only the failed write was made");
  assert.equal(store.pending, 1);
  // The broker delivers the result again, and its write commits.
  assert.equal(await store.complete(result("t1")), true);
  await reading;
  assert.equal(read, "succeeded");
  assert.equal(store.pending, 0);
});

Deno.test("pending results: a list waits for the copy of a failed write too, and other tasks are not held", async () => {
  const store = new PendingResultsStore(failingOnce(new MemoryTaskStore()));
  await store.create(newTask("t1"));
  await store.create(newTask("t2"));
  await assert.rejects(store.complete(result("t1")));
  assert.equal((await store.get("t2"))?.status, "queued", "another task is read at once");
  const listing = store.list({ statuses: ["succeeded"], limit: 10 });
  await store.complete(result("t1"));
  const page = await listing;
  assert.deepEqual(page.items.map((item) => item.taskId), ["t1"]);
});
