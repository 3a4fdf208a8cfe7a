/**
 * A result is pushed to its connection while the store is still recording it, and reads on the same server
 * wait for that record: `status` right after the push shows the result. A result that arrives while a cancel
 * of its task is being recorded is not pushed ahead of the cancel.
 *
 * An in-process server (so that the store's writes can be held back) on the real RabbitMQ, with a real
 * worker process. The kill -9 between the push and the COMMIT is in `tests/chaos/result_before_commit_test.ts`.
 */
import assert from "node:assert/strict";
import type { CancelOutcome } from "../../shared/ports.ts";
import type { ResultMessage, StartedNotice } from "../../shared/queue_messages.ts";
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import { startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { overriding, startInProcessServer } from "../_helpers/in_process_server.ts";
import { needsRabbit } from "../_helpers/services.ts";

async function hello(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  await client.send({ type: "hello", id: "h", client: { name: "early", kind: "cli" } });
  await client.next((f) => f.type === "welcome");
  return client;
}

Deno.test({
  name:
    "a result is pushed before its record is written, and `status` right after the push waits for the record and shows it",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("early");
    const memory = new MemoryTaskStore();
    const held = Promise.withResolvers<void>();
    const completing = Promise.withResolvers<void>();
    // The record of a result is written only once the test lets it.
    const store = overriding(memory, {
      complete: async (result: ResultMessage) => {
        completing.resolve();
        await held.promise;
        return await memory.complete(result);
      },
    });
    await using app = await startInProcessServer(queues, store);
    await using workerData = await tempDataDir();
    await using _worker = await startWorker("w1", queues, ["--data-dir", workerData.path]);
    await using client = await hello(app.port);

    await client.send({
      type: "submit",
      id: "s1",
      task: { type: "echo", payload: { message: "uno" } },
    });
    const accepted = await client.next((f) => f.id === "s1");
    assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
    const taskId = String(accepted.taskId);
    // Pushed while its record is held back (the old order, record then push, never pushed it).
    const result = await client.next((f) => f.type === "result" && f.taskId === taskId);
    await completing.promise;
    assert.equal(result.status, "succeeded");
    assert.notEqual((await memory.get(taskId))?.status, "succeeded", "not recorded yet");

    await client.send({ type: "status", id: "q1", taskId });
    await client.send({ type: "list", id: "l1", limit: 10 });
    held.resolve();
    const status = await client.next((f) => f.id === "q1");
    assert.equal(status.type, "task", JSON.stringify(status));
    assert.equal(status.status, "succeeded");
    assert.deepEqual(status.output, { message: "uno" });
    const list = await client.next((f) => f.id === "l1");
    const items = list.items as { taskId: string; status: string }[];
    assert.equal(items.find((item) => item.taskId === taskId)?.status, "succeeded");
  },
});

Deno.test({
  name:
    "a result that arrives while a cancel of its queued task is being recorded is not pushed: the client gets `cancelled`, as the record says",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("early-cancel");
    const memory = new MemoryTaskStore();
    const cancelHeld = Promise.withResolvers<void>();
    const cancelCalled = Promise.withResolvers<void>();
    const completed = Promise.withResolvers<boolean>();
    const store = overriding(memory, {
      // Start notices are dropped: the task stays `queued` in the record while the worker runs it.
      markStarted: (_notice: StartedNotice) => Promise.resolve(),
      // The cancel is applied at once and answered later, as a store answers after its COMMIT.
      cancel: async (taskId: string): Promise<CancelOutcome> => {
        const outcome = memory.cancel(taskId);
        cancelCalled.resolve();
        await cancelHeld.promise;
        return await outcome;
      },
      complete: async (result: ResultMessage) => {
        const first = await memory.complete(result);
        completed.resolve(first);
        return first;
      },
    });
    await using app = await startInProcessServer(queues, store);
    await using workerData = await tempDataDir();
    await using _worker = await startWorker("w1", queues, ["--data-dir", workerData.path]);
    await using client = await hello(app.port);

    await client.send({ type: "submit", id: "s1", task: { type: "sleep", payload: { ms: 300 } } });
    const accepted = await client.next((f) => f.id === "s1");
    assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
    const taskId = String(accepted.taskId);
    await client.send({ type: "cancel", id: "c1", taskId });
    await cancelCalled.promise;
    // The worker finishes the task while the cancel is being recorded; its result is a duplicate.
    assert.equal(await completed.promise, false);
    cancelHeld.resolve();
    const cancelled = await client.next((f) => f.id === "c1");
    assert.equal(cancelled.type, "cancelled", JSON.stringify(cancelled));
    assert.equal(cancelled.status, "cancelled");
    const result = await client.next((f) => f.type === "result" && f.taskId === taskId);
    assert.equal(result.status, "cancelled", JSON.stringify(result));
    assert.equal((await memory.get(taskId))?.status, "cancelled");
  },
});
