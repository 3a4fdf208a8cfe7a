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
import type { NewTask, ServerBroker, TaskStore } from "../../shared/ports.ts";
import type { ControlMessage, TaskMessage } from "../../shared/queue_messages.ts";
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import { startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { overriding, startInProcessServer } from "../_helpers/in_process_server.ts";
import { DATABASE_URL, needsPostgres, needsRabbit } from "../_helpers/services.ts";
import { dropPostgresSchema, openPostgresTaskStore } from "../../server/stores/postgres.ts";

/** How long the wrapped broker holds each task's confirm back. */
const CONFIRM_DELAY_MS = 4_000;

/** A raw client connected to `port` that has said `hello` as `name` and got its `welcome`. */
async function helloClient(port: number, name = "overlap", kind = "cli"): Promise<RawClient> {
  const client = await RawClient.connect(port);
  await client.send({ type: "hello", id: "h", client: { name, kind } });
  await client.next((f) => f.type === "welcome");
  return client;
}

/**
 * A `publishTasks` for {@linkcode overriding} that notes the task ids of each call in `rounds` and tells the
 * tasks of the first call that their confirm was lost (`PUBLISH_UNCONFIRMED`), although the broker got them.
 */
function losingFirstConfirms(
  broker: ServerBroker,
  rounds: string[][],
): ServerBroker["publishTasks"] {
  return (tasks, options) => {
    rounds.push(tasks.map((t) => t.taskId));
    const lost = rounds.length === 1;
    broker.publishTasks(tasks, {
      ...options,
      settled: (index, error) =>
        options.settled(index, lost ? new ColmenaError("PUBLISH_UNCONFIRMED") : error),
    });
  };
}

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
    await using client = await helloClient(app.port);

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
    await using client = await helloClient(app.port);

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

/**
 * A store whose `createMany` is held until `release` (or 5 s), and a broker that notes each published task
 * with whether its record was written by then.
 */
function heldRecords() {
  const memory = new MemoryTaskStore();
  const published: { taskId: string; recorded: boolean }[] = [];
  const recorded = new Set<string>();
  let gate = Promise.withResolvers<void>();
  const store = overriding<TaskStore>(memory, {
    createMany: async (tasks: readonly NewTask[]) => {
      await Promise.race([gate.promise, new Promise((r) => setTimeout(r, 5_000))]);
      const outcomes = await memory.createMany(tasks);
      for (const task of tasks) recorded.add(task.taskId);
      return outcomes;
    },
  });
  const wrapBroker = (broker: ServerBroker) =>
    overriding(broker, {
      publishTask: (task: TaskMessage, options?: { bulk?: boolean }) => {
        published.push({ taskId: task.taskId, recorded: recorded.has(task.taskId) });
        return broker.publishTask(task, options);
      },
      publishTasks: (
        tasks: readonly TaskMessage[],
        options: { bulk?: boolean; settled: (index: number, error?: unknown) => void },
      ) => {
        for (const task of tasks) {
          published.push({ taskId: task.taskId, recorded: recorded.has(task.taskId) });
        }
        return broker.publishTasks(tasks, options);
      },
    });
  return {
    memory,
    store,
    wrapBroker,
    published,
    release() {
      gate.resolve();
      gate = Promise.withResolvers<void>();
    },
  };
}

/** Waits until `ready()` holds, checking every 10 ms, for at most 5 s. */
async function until(ready: () => boolean): Promise<void> {
  for (let waited = 0; !ready(); waited += 10) {
    if (waited > 5_000) throw new Error("Timed out waiting for a condition");
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test({
  name:
    "a submit_many's tasks with no key or a free one are published while their slice is recorded; a repeated key waits for the record and gets the first task",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-many");
    const held = heldRecords();
    await using app = await startInProcessServer(queues, held.store, {
      wrapBroker: held.wrapBroker,
    });
    await using client = await helloClient(app.port);
    // A task recorded earlier holds "k0" (a lone submit records with `create`, not held).
    await client.send({
      type: "submit",
      id: "s0",
      task: { type: "echo", payload: { message: "0" } },
      options: { idempotencyKey: "k0" },
    });
    const first = await client.next((f) => f.id === "s0");
    assert.equal(first.type, "accepted", JSON.stringify(first));
    const before = held.published.length;

    await client.send({
      type: "submit_many",
      id: "m1",
      tasks: [
        { task: { type: "echo", payload: { message: "a" } } },
        { task: { type: "echo", payload: { message: "b" } }, options: { idempotencyKey: "k1" } },
        { task: { type: "echo", payload: { message: "b" } }, options: { idempotencyKey: "k1" } },
        { task: { type: "echo", payload: { message: "0" } }, options: { idempotencyKey: "k0" } },
      ],
    });
    // The record is held until the first two are queued: they must not wait for it.
    await until(() => held.published.length >= before + 2);
    held.release();
    const answer = await client.next((f) => f.id === "m1");
    assert.equal(answer.type, "accepted_many", JSON.stringify(answer));
    const items = answer.items as { taskId?: string; duplicate?: true }[];
    const ids = items.map((item) => String(item.taskId));
    assert.deepEqual(
      held.published.slice(before).map((p) => [p.taskId, p.recorded]),
      [[ids[0], false], [ids[1], false]],
    );
    // The repeats got the first task of their key, and nothing of theirs was published.
    assert.deepEqual(items[2], { taskId: ids[1], duplicate: true, payloadDiffers: false });
    assert.deepEqual(items[3], { taskId: first.taskId, duplicate: true, payloadDiffers: false });
    for (const id of ids.slice(0, 2)) {
      assert.equal((await held.memory.get(id))?.status, "queued");
    }
  },
});

Deno.test({
  name:
    "a key whose record is still being written by another submit_many is not published again: the repeat waits and gets that task",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-many-held");
    const held = heldRecords();
    const controls: ControlMessage[] = [];
    await using app = await startInProcessServer(queues, held.store, {
      wrapBroker: (broker) =>
        held.wrapBroker(overriding(broker, {
          publishControl: (message: ControlMessage) => {
            controls.push(message);
            return broker.publishControl(message);
          },
        })),
    });
    await using one = await helloClient(app.port, "mismo");
    await using two = await helloClient(app.port, "mismo");
    const task = {
      task: { type: "echo", payload: { message: "x" } },
      options: { idempotencyKey: "kx" },
    };
    await one.send({ type: "submit_many", id: "m1", tasks: [task] });
    await until(() => held.published.length >= 1);
    // The first record of "kx" is still held: the second frame must not take the key as free.
    await two.send({ type: "submit_many", id: "m2", tasks: [task] });
    await new Promise((r) => setTimeout(r, 300));
    held.release();
    const a1 = await one.next((f) => f.id === "m1");
    const a2 = await two.next((f) => f.id === "m2");
    assert.equal(a1.type, "accepted_many", JSON.stringify(a1));
    assert.equal(a2.type, "accepted_many", JSON.stringify(a2));
    const firstId = (a1.items as { taskId: string }[])[0]!.taskId;
    assert.deepEqual((a2.items as unknown[])[0], {
      taskId: firstId,
      duplicate: true,
      payloadDiffers: false,
    });
    assert.deepEqual(held.published.map((p) => p.taskId), [firstId]);
    assert.deepEqual(controls, []);
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
    await using client = await helloClient(app.port);

    const tasks = Array.from({ length: 30 }, (_, i) => ({
      task: { type: "echo", payload: { message: `m${i}` } },
      ...(i === 7 || i === 8 ? { options: { idempotencyKey: "clave" } } : {}),
    }));
    await client.send({ type: "submit_many", id: "m1", tasks });
    const answer = await client.next((f) => f.id === "m1");
    assert.equal(answer.type, "accepted_many", JSON.stringify(answer));
    const items = answer.items as { error?: { code: string } }[];
    assert.equal(items.length, 30);
    for (const item of items) assert.equal(item.error?.code, "STORE_UNAVAILABLE");
    // 29 were queued (the first with "clave" too) and are cancelled, in one message; the repeat of "clave"
    // waited for the record and was never published.
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

Deno.test({
  name:
    "when both the record of a slice and the broker's confirms fail, the tasks that may be queued are cancelled",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-many-unconfirmed");
    const memory = new MemoryTaskStore();
    const store = overriding<TaskStore>(memory, {
      createMany: () => Promise.reject(new ColmenaError("STORE_UNAVAILABLE")),
    });
    const published: string[] = [];
    const controls: ControlMessage[] = [];
    await using app = await startInProcessServer(queues, store, {
      wrapBroker: (broker) =>
        overriding(broker, {
          // Sent, then the confirm is lost, and the broker does not come back within the deadline.
          publishTask: async (task: TaskMessage, options?: { bulk?: boolean }) => {
            published.push(task.taskId);
            await broker.publishTask(task, options);
            throw new ColmenaError("PUBLISH_UNCONFIRMED");
          },
          publishTasks: (
            tasks: readonly TaskMessage[],
            options: { bulk?: boolean; settled: (index: number, error?: unknown) => void },
          ) => {
            for (const task of tasks) published.push(task.taskId);
            broker.publishTasks(tasks, {
              ...options,
              settled: (index) => options.settled(index, new ColmenaError("PUBLISH_UNCONFIRMED")),
            });
          },
          waitConnected: () => Promise.resolve(false),
          publishControl: (message: ControlMessage) => {
            controls.push(message);
            return broker.publishControl(message);
          },
        }),
    });
    await using client = await helloClient(app.port);

    await client.send({
      type: "submit_many",
      id: "m1",
      tasks: [
        { task: { type: "echo", payload: { message: "a" } } },
        { task: { type: "echo", payload: { message: "b" } }, options: { idempotencyKey: "k" } },
        { task: { type: "echo", payload: { message: "c" } } },
      ],
    });
    const answer = await client.next((f) => f.id === "m1");
    assert.equal(answer.type, "accepted_many", JSON.stringify(answer));
    for (const item of answer.items as { error?: { code: string } }[]) {
      assert.equal(item.error?.code, "STORE_UNAVAILABLE");
    }
    assert.equal(published.length, 3);
    const cancelled = controls.flatMap((c) => c.type === "cancel" ? c.taskIds : []);
    assert.deepEqual([...cancelled].sort(), [...published].sort());
  },
});

Deno.test({
  name:
    "a submit_many's tasks whose results come before the broker's confirms are answered accepted_many, then each result, without waiting for the confirms",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-many-early");
    const store = new MemoryTaskStore();
    let confirmsTold = 0;
    await using app = await startInProcessServer(queues, store, {
      wrapBroker: (broker) =>
        overriding(broker, {
          // Each task's confirm is seen CONFIRM_DELAY_MS late.
          publishTasks: (
            tasks: readonly TaskMessage[],
            options: { bulk?: boolean; settled: (index: number, error?: unknown) => void },
          ) =>
            broker.publishTasks(tasks, {
              ...options,
              settled: (index, error) =>
                void setTimeout(() => {
                  confirmsTold++;
                  options.settled(index, error);
                }, CONFIRM_DELAY_MS),
            }),
        }),
    });
    await using workerData = await tempDataDir();
    await using _worker = await startWorker("w1", queues, ["--data-dir", workerData.path]);
    await using client = await helloClient(app.port);

    await client.send({
      type: "submit_many",
      id: "m1",
      tasks: [
        { task: { type: "echo", payload: { message: "a" } } },
        { task: { type: "echo", payload: { message: "b" } }, options: { idempotencyKey: "kb" } },
        { task: { type: "echo", payload: { message: "c" } } },
      ],
    });
    const answer = await client.next((f) => f.id === "m1");
    assert.equal(answer.type, "accepted_many", JSON.stringify(answer));
    const ids = (answer.items as { taskId: string }[]).map((item) => item.taskId);
    assert.equal(new Set(ids).size, 3);
    const results = [];
    for (const id of ids) {
      results.push(await client.next((f) => f.type === "result" && f.taskId === id));
    }
    // No confirm was told yet: the answer and the results did not wait for them.
    assert.equal(confirmsTold, 0);
    assert.deepEqual(results.map((r) => r.output), [{ message: "a" }, { message: "b" }, {
      message: "c",
    }]);
    for (const id of ids) assert.equal((await store.get(id))?.status, "succeeded");
  },
});

Deno.test({
  name:
    "a submit_many's tasks whose confirm is lost are published again together, each under its id, and accepted",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-many-again");
    const store = new MemoryTaskStore();
    const rounds: string[][] = [];
    await using app = await startInProcessServer(queues, store, {
      wrapBroker: (broker) =>
        overriding(broker, {
          // The first publish is sent, but every confirm is lost; the next one goes through.
          publishTasks: losingFirstConfirms(broker, rounds),
        }),
    });
    await using client = await helloClient(app.port);

    await client.send({
      type: "submit_many",
      id: "m1",
      tasks: [
        { task: { type: "echo", payload: { message: "a" } } },
        { task: { type: "echo", payload: { message: "b" } }, options: { idempotencyKey: "kb" } },
      ],
    });
    const answer = await client.next((f) => f.id === "m1");
    assert.equal(answer.type, "accepted_many", JSON.stringify(answer));
    const ids = (answer.items as { taskId: string }[]).map((item) => item.taskId);
    assert.deepEqual(rounds, [ids, ids]);
    for (const id of ids) assert.equal((await store.get(id))?.status, "queued");
    assert.equal(app.server.stats.republished, 2);
  },
});

Deno.test({
  name:
    "a submit_many's task whose confirm was lost but whose result came in while the broker reconnected is not published again",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-many-ran");
    const store = new MemoryTaskStore();
    const rounds: string[][] = [];
    let ranMeanwhile = false;
    await using app = await startInProcessServer(queues, store, {
      wrapBroker: (broker) =>
        overriding(broker, {
          // The first publish reaches the queue but its confirm is lost.
          publishTasks: losingFirstConfirms(broker, rounds),
          // "Reconnected" only once the worker has run the task from that copy.
          waitConnected: async () => {
            await until(() => ranMeanwhile);
            return true;
          },
        }),
    });
    await using workerData = await tempDataDir();
    await using _worker = await startWorker("w1", queues, ["--data-dir", workerData.path]);
    await using client = await helloClient(app.port);

    await client.send({
      type: "submit_many",
      id: "m1",
      tasks: [{ task: { type: "echo", payload: { message: "una vez" } } }],
    });
    await until(() => rounds.length === 1);
    const taskId = rounds[0]![0]!;
    await until(() => {
      void store.get(taskId).then((view) => {
        ranMeanwhile ||= view?.status === "succeeded";
      });
      return ranMeanwhile;
    });
    const answer = await client.next((f) => f.id === "m1");
    assert.equal(answer.type, "accepted_many", JSON.stringify(answer));
    assert.deepEqual(answer.items, [{ taskId }]);
    const result = await client.next((f) => f.type === "result" && f.taskId === taskId);
    assert.deepEqual(result.output, { message: "una vez" });
    assert.equal(rounds.length, 1, "published again after its result came in");
  },
});

Deno.test({
  name:
    "with PostgreSQL, a plain submit is published while it is recorded: a result written before its record (as another server would) is completed by the record, and the client gets accepted and its result",
  ignore: (await needsRabbit()).ignore || (await needsPostgres()).ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-pg");
    const schema = `colmena_test_${crypto.randomUUID().replaceAll("-", "")}`;
    try {
      const real = await openPostgresTaskStore(DATABASE_URL, { schema });
      const published = new Set<string>();
      let resultFirst = false;
      // The record is held back until the task's result is written: the order another server's consumer can
      // give (its result's write committed before this server's create).
      const store = overriding(real, {
        create: async (task: NewTask) => {
          while (!published.has(task.taskId)) await new Promise((r) => setTimeout(r, 5));
          for (let i = 0; i < 400; i++) {
            if ((await real.get(task.taskId))?.status === "succeeded") {
              resultFirst = true;
              break;
            }
            await new Promise((r) => setTimeout(r, 10));
          }
          return await real.create(task);
        },
      });
      try {
        await using app = await startInProcessServer(queues, store, {
          wrapBroker: (broker) =>
            overriding(broker, {
              publishTask: (task: TaskMessage, options?: { bulk?: boolean }) => {
                published.add(task.taskId);
                return broker.publishTask(task, options);
              },
            }),
        });
        await using workerData = await tempDataDir();
        await using _worker = await startWorker("w1", queues, ["--data-dir", workerData.path]);
        await using client = await helloClient(app.port, "pg-overlap", "web");
        await client.send({
          type: "submit",
          id: "s1",
          task: { type: "echo", payload: { message: "hola" } },
          options: { priority: 7 },
        });
        const accepted = await client.next((f) => f.id === "s1");
        assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
        const result = await client.next((f) =>
          f.type === "result" && f.taskId === accepted.taskId
        );
        assert.equal(result.status, "succeeded");
        assert.deepEqual(result.output, { message: "hola" });
        assert.ok(resultFirst, "the result was written before the record");
        const view = await real.get(String(accepted.taskId));
        assert.equal(view?.status, "succeeded");
        assert.equal(view?.priority, 7, "the record's own fields completed the orphan");
        assert.equal(view?.owner, "pg-overlap");
        assert.equal(view?.client.kind, "web");
      } finally {
        await real.close();
      }
    } finally {
      await dropPostgresSchema(DATABASE_URL, schema);
    }
  },
});
