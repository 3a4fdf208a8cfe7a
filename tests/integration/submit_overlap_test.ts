/**
 * The submit path of a plain task on a store only this server writes: the record and the publish run at
 * once, a result that comes before the broker's confirm answers `accepted` at once, and a record that fails
 * after the task was queued answers the store's error and cancels the task.
 *
 * An in-process server (so that the broker's confirm and the store's create can be slowed or failed) on the
 * real RabbitMQ, with a real worker process.
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import type { NewTask, TaskStore } from "../../shared/ports.ts";
import type { ControlMessage, TaskMessage } from "../../shared/queue_messages.ts";
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import { startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { overriding, startInProcessServer } from "../_helpers/in_process_server.ts";
import { needsRabbit } from "../_helpers/services.ts";

/** How long the wrapped broker holds each task's confirm back. */
const CONFIRM_DELAY_MS = 4_000;

/** A server on `store`, whose broker's task confirms are seen `CONFIRM_DELAY_MS` late when `slowConfirms`. */
function startInProcess(
  queues: { taskQueue: string; resultQueue: string },
  store: TaskStore,
  options: { slowConfirms?: boolean; controls?: ControlMessage[] } = {},
): Promise<{ port: number } & AsyncDisposable> {
  return startInProcessServer(queues, store, {
    wrapBroker: (broker) =>
      overriding(broker, {
        ...(options.slowConfirms
          ? {
            publishTask: async (task: TaskMessage) => {
              await broker.publishTask(task);
              await new Promise((r) => setTimeout(r, CONFIRM_DELAY_MS));
            },
          }
          : {}),
        publishControl: (message: ControlMessage) => {
          options.controls?.push(message);
          return broker.publishControl(message);
        },
      }),
  });
}

Deno.test({
  name:
    "a task whose result comes before the broker's confirm is answered accepted, then its result, without waiting for the confirm",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap");
    const store = new MemoryTaskStore();
    await using app = await startInProcess(queues, store, { slowConfirms: true });
    await using workerData = await tempDataDir();
    await using _worker = await startWorker("w1", queues, ["--data-dir", workerData.path]);
    await using client = await RawClient.connect(app.port);
    await client.send({ type: "hello", id: "h", client: { name: "overlap", kind: "cli" } });
    await client.next((f) => f.type === "welcome");

    const started = performance.now();
    await client.send({
      type: "submit",
      id: "s1",
      task: { type: "echo", payload: { message: "hola" } },
    });
    const accepted = await client.next((f) => f.id === "s1");
    assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
    const result = await client.next((f) => f.type === "result" && f.taskId === accepted.taskId);
    const elapsed = performance.now() - started;
    assert.equal(result.status, "succeeded");
    assert.deepEqual(result.output, { message: "hola" });
    assert.ok(
      elapsed < CONFIRM_DELAY_MS,
      `accepted and result came in ${elapsed.toFixed(0)} ms, before the held confirm`,
    );
    // The record says what the client was told.
    assert.equal((await store.get(String(accepted.taskId)))?.status, "succeeded");
  },
});

Deno.test({
  name:
    "a plain task whose record fails while it is being queued gets STORE_UNAVAILABLE, is cancelled, and the server keeps serving",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-fail");
    const memory = new MemoryTaskStore();
    let failCreates = true;
    const store = overriding<TaskStore>(memory, {
      create: (task: NewTask) =>
        failCreates ? Promise.reject(new ColmenaError("STORE_UNAVAILABLE")) : memory.create(task),
    });
    const controls: ControlMessage[] = [];
    await using app = await startInProcess(queues, store, { controls });
    await using client = await RawClient.connect(app.port);
    await client.send({ type: "hello", id: "h", client: { name: "overlap", kind: "cli" } });
    await client.next((f) => f.type === "welcome");

    await client.send({
      type: "submit",
      id: "s1",
      task: { type: "echo", payload: { message: "x" } },
    });
    const refused = await client.next((f) => f.id === "s1");
    assert.equal(refused.type, "error", JSON.stringify(refused));
    assert.equal(refused.code, "STORE_UNAVAILABLE");
    // The copy that reached the queue is cancelled, so a worker drops it instead of running it.
    assert.equal(controls.length, 1);
    const cancel = controls[0]!;
    assert.equal(cancel.type, "cancel");
    assert.equal(cancel.type === "cancel" ? cancel.taskIds.length : 0, 1);

    failCreates = false;
    await client.send({
      type: "submit",
      id: "s2",
      task: { type: "echo", payload: { message: "y" } },
    });
    const accepted = await client.next((f) => f.id === "s2");
    assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
    assert.equal((await memory.get(String(accepted.taskId)))?.status, "queued");
  },
});

Deno.test({
  name:
    "the plain tasks of a submit_many are published while their slice is recorded, and a keyed one only once it is recorded",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-many");
    const memory = new MemoryTaskStore();
    // Each slice's record is held until a task is published (or 5 s pass): a plain task must not wait for it.
    const published: { taskId: string; recorded: boolean }[] = [];
    const recorded = new Set<string>();
    let sawPublish = Promise.withResolvers<void>();
    const store = overriding<TaskStore>(memory, {
      createMany: async (tasks: readonly NewTask[]) => {
        await Promise.race([sawPublish.promise, new Promise((r) => setTimeout(r, 5_000))]);
        sawPublish = Promise.withResolvers<void>();
        const outcomes = await memory.createMany(tasks);
        for (const task of tasks) recorded.add(task.taskId);
        return outcomes;
      },
    });
    await using app = await startInProcessServer(queues, store, {
      wrapBroker: (broker) =>
        overriding(broker, {
          publishTask: (task: TaskMessage, options?: { bulk?: boolean }) => {
            published.push({ taskId: task.taskId, recorded: recorded.has(task.taskId) });
            sawPublish.resolve();
            return broker.publishTask(task, options);
          },
        }),
    });
    await using client = await RawClient.connect(app.port);
    await client.send({ type: "hello", id: "h", client: { name: "overlap", kind: "cli" } });
    await client.next((f) => f.type === "welcome");

    await client.send({
      type: "submit_many",
      id: "m1",
      tasks: [
        { task: { type: "echo", payload: { message: "a" } } },
        { task: { type: "echo", payload: { message: "b" } }, options: { idempotencyKey: "k1" } },
        { task: { type: "echo", payload: { message: "c" } } },
      ],
    });
    const answer = await client.next((f) => f.id === "m1");
    assert.equal(answer.type, "accepted_many", JSON.stringify(answer));
    const items = answer.items as { taskId?: string }[];
    const ids = items.map((item) => String(item.taskId));
    const plainIds = [ids[0], ids[2]];
    for (const id of plainIds) {
      assert.equal(
        published.find((p) => p.taskId === id)?.recorded,
        false,
        `${id} waited for its record`,
      );
    }
    // The keyed task is published once its record says it is the first with its key.
    assert.equal(published.find((p) => p.taskId === ids[1])?.recorded, true);
    // And it answered only after the records were written.
    for (const id of ids) assert.equal((await memory.get(id))?.status, "queued");
  },
});

Deno.test({
  name:
    "when the record of a submit_many's slice fails, each task gets STORE_UNAVAILABLE, the queued ones are cancelled together, and the server keeps serving",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-many-fail");
    const memory = new MemoryTaskStore();
    let failCreates = true;
    const store = overriding<TaskStore>(memory, {
      createMany: (tasks: readonly NewTask[]) =>
        failCreates
          ? Promise.reject(new ColmenaError("STORE_UNAVAILABLE"))
          : memory.createMany(tasks),
    });
    const controls: ControlMessage[] = [];
    await using app = await startInProcess(queues, store, { controls });
    await using client = await RawClient.connect(app.port);
    await client.send({ type: "hello", id: "h", client: { name: "overlap", kind: "cli" } });
    await client.next((f) => f.type === "welcome");

    const tasks = Array.from({ length: 30 }, (_, i) => ({
      task: { type: "echo", payload: { message: `m${i}` } },
      ...(i === 7 ? { options: { idempotencyKey: "clave" } } : {}),
    }));
    await client.send({ type: "submit_many", id: "m1", tasks });
    const answer = await client.next((f) => f.id === "m1");
    assert.equal(answer.type, "accepted_many", JSON.stringify(answer));
    const items = answer.items as { error?: { code: string } }[];
    assert.equal(items.length, 30);
    for (const item of items) assert.equal(item.error?.code, "STORE_UNAVAILABLE");
    // The 29 plain tasks were queued and are cancelled, in one message; the keyed one was never published.
    const cancelled = controls.flatMap((c) => c.type === "cancel" ? c.taskIds : []);
    assert.equal(cancelled.length, 29);
    assert.equal(new Set(cancelled).size, 29);
    assert.ok(controls.length <= 2, `${controls.length} cancel messages`);

    failCreates = false;
    await client.send({ type: "submit_many", id: "m2", tasks: tasks.slice(0, 3) });
    const accepted = await client.next((f) => f.id === "m2");
    assert.equal(accepted.type, "accepted_many", JSON.stringify(accepted));
    for (const item of accepted.items as { taskId?: string }[]) {
      assert.equal((await memory.get(String(item.taskId)))?.status, "queued");
    }
  },
});
