/**
 * Unit tests of `shared/adapters/rabbitmq/task_batcher.ts`, `task_route.ts`'s batch reading and the fairness
 * rule of `server/worker_registry.ts`: how tasks are grouped into messages, and how a message is read back.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import process from "node:process";
import { setImmediate } from "node:timers";
import { type BatchedTask, TaskBatcher } from "../../shared/adapters/rabbitmq/task_batcher.ts";
import { readTasks, tasksToTheirQueue } from "../../shared/adapters/rabbitmq/task_route.ts";
import {
  BULK_HEADER,
  MAX_BULK_TASKS,
  QUEUE_FORMAT,
  type TaskMessage,
  TASKS_HEADER,
} from "../../shared/queue_messages.ts";
import { WorkerRegistry } from "../../server/worker_registry.ts";

function _task(overrides: Partial<TaskMessage> = {}): TaskMessage {
  return {
    v: QUEUE_FORMAT,
    taskId: crypto.randomUUID(),
    type: "echo",
    payload: { message: "hola" },
    client: { name: "lotes", kind: "cli" },
    origin: "srv",
    priority: 0,
    timeoutMs: 1_000,
    submittedAt: new Date().toISOString(),
    attempt: 1,
    maxAttempts: 3,
    deliveries: 1,
    ...overrides,
  };
}

/** A batcher whose publish records each message and settles it as `outcome` says. */
function _batcher(
  options: { maxTasks: number; maxChars?: number; limit?: number },
  outcome: (tasks: readonly BatchedTask[]) => Promise<void> = () => Promise.resolve(),
) {
  const sent: string[][] = [];
  const batcher = new TaskBatcher({
    maxTasks: options.maxTasks,
    ...(options.maxChars === undefined ? {} : { maxChars: options.maxChars }),
    ...(options.limit === undefined ? {} : { limitFor: () => options.limit! }),
    publish: (tasks) => {
      sent.push(tasks.map((t) => t.task.taskId));
      return outcome(tasks);
    },
  });
  return { batcher, sent };
}

Deno.test("the batcher packs one turn's tasks per type and priority, within the count cap", async () => {
  const { batcher, sent } = _batcher({ maxTasks: 3 });
  const a = Array.from({ length: 7 }, () => _task());
  const b = [_task({ priority: 5 }), _task({ priority: 5 })];
  const c = [_task({ type: "sleep" })];
  await Promise.all([...a, ...b, ...c].map((t) => batcher.add(t)));
  assert.deepEqual(sent, [
    a.slice(0, 3).map((t) => t.taskId),
    a.slice(3, 6).map((t) => t.taskId),
    a.slice(6).map((t) => t.taskId),
    b.map((t) => t.taskId),
    c.map((t) => t.taskId),
  ]);
});

Deno.test("the batcher starts a new message before the character cap, and sends a big task alone", async () => {
  const size = JSON.stringify(_task()).length;
  const { batcher, sent } = _batcher({ maxTasks: 32, maxChars: size * 2 + 10 });
  const big = _task({ payload: { message: "x".repeat(size * 3) } });
  const tasks = [_task(), _task(), _task(), big, _task()];
  await Promise.all(tasks.map((t) => batcher.add(t)));
  assert.deepEqual(sent.map((m) => m.length), [2, 1, 1, 1]);
  assert.deepEqual(sent[2], [big.taskId]);
});

Deno.test("with a cap of 1 (option or fairness) each task is published at once, in its own message", () => {
  for (const options of [{ maxTasks: 1 }, { maxTasks: 32, limit: 1 }]) {
    const { batcher, sent } = _batcher(options);
    const tasks = [_task(), _task()];
    for (const t of tasks) batcher.add(t);
    // Sent before the turn ends: no wait for a task that would go alone anyway.
    assert.deepEqual(sent, tasks.map((t) => [t.taskId]));
  }
});

Deno.test("a failed confirm rejects every task of that message and no other", async () => {
  const { batcher, sent } = _batcher(
    { maxTasks: 2 },
    (tasks) => tasks.length === 2 ? Promise.reject(new Error("nack")) : Promise.resolve(),
  );
  const outcomes = await Promise.allSettled([_task(), _task(), _task()].map((t) => batcher.add(t)));
  assert.equal(sent.length, 2);
  assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected", "fulfilled"]);
  // The next turn starts new groups.
  await new Promise((r) => setImmediate(r));
  await batcher.add(_task());
  assert.equal(sent.length, 3);
});

Deno.test("a batch message reads back as its tasks, a single one as one, and a bad element spoils the batch", () => {
  const tasks = [_task(), _task(), _task()];
  const message = tasksToTheirQueue(
    "tq",
    tasks.map((task) => ({ task, json: JSON.stringify(task) })),
  );
  assert.equal((message.props.headers as Record<string, unknown>)[TASKS_HEADER], 3);
  assert.equal(message.routingKey, "tq.echo");
  assert.deepEqual(readTasks(message.body)?.map((t) => t.taskId), tasks.map((t) => t.taskId));
  const single = tasksToTheirQueue("tq", [{ task: tasks[0]!, json: JSON.stringify(tasks[0]) }]);
  assert.equal(single.props.headers, undefined);
  assert.deepEqual(JSON.parse(single.body.toString()), tasks[0]);
  assert.equal(readTasks(single.body)?.length, 1);
  const spoiled = { v: QUEUE_FORMAT, tasks: [tasks[0], { ...tasks[1], taskId: 7 }] };
  assert.equal(readTasks(Buffer.from(JSON.stringify(spoiled))), null);
  assert.equal(readTasks(Buffer.from("{")), null);
});

Deno.test("the fairness cap is a quarter of the smallest concurrency among live workers of the type", () => {
  const workers = new WorkerRegistry();
  const beat = (
    pid: number,
    concurrency: number,
    more: { types?: string[]; batches?: boolean; stopping?: boolean } = {},
  ) =>
    workers.heard({
      worker: `w${pid}`,
      host: "h",
      pid,
      concurrency,
      inProgress: 0,
      processed: 0,
      failed: 0,
      startedAt: "",
      at: "",
      stopping: more.stopping ?? false,
      types: more.types ?? ["echo"],
      stopped: false,
      batches: more.batches ?? true,
      bulks: true,
    });
  assert.equal(workers.batchLimit("echo"), 1, "no worker known");
  beat(1, 100);
  assert.equal(workers.batchLimit("echo"), 25);
  beat(2, 10);
  assert.equal(workers.batchLimit("echo"), 2);
  beat(3, 1, { types: ["sleep"] });
  assert.equal(workers.batchLimit("echo"), 2, "a worker of another type does not count");
  assert.equal(workers.batchLimit("sleep"), 1);
  beat(4, 2, { stopping: true });
  assert.equal(workers.batchLimit("echo"), 2, "a stopping worker takes no task");
  beat(5, 100, { batches: false });
  assert.equal(workers.batchLimit("echo"), 1, "a worker that cannot read batches");
});

Deno.test("bulk tasks go together past the fairness cap, up to the bulk cap, apart from the others", async () => {
  const sent: { ids: string[]; bulk: boolean }[] = [];
  let bulkLimit = Infinity;
  const batcher = new TaskBatcher({
    maxTasks: 4,
    limitFor: () => 1,
    bulkLimitFor: () => bulkLimit,
    maxChars: 10_000_000,
    publish: (tasks, bulk) => {
      sent.push({ ids: tasks.map((t) => t.task.taskId), bulk });
      return Promise.resolve();
    },
  });
  const bulk = Array.from({ length: MAX_BULK_TASKS + 10 }, () => _task());
  const lone = [_task(), _task()];
  const other = [_task({ type: "sleep" }), _task({ type: "sleep" })];
  await Promise.all([
    ...bulk.slice(0, 5).map((t) => batcher.add(t, { bulk: true })),
    ...lone.map((t) => batcher.add(t)),
    ...bulk.slice(5).map((t) => batcher.add(t, { bulk: true })),
    ...other.map((t) => batcher.add(t, { bulk: true })),
  ]);
  assert.deepEqual(sent, [
    // The fairness cap (1) sends the lone tasks at once; the bulk ones wait for the end of the turn.
    { ids: [lone[0]!.taskId], bulk: false },
    { ids: [lone[1]!.taskId], bulk: false },
    { ids: bulk.slice(0, MAX_BULK_TASKS).map((t) => t.taskId), bulk: true },
    { ids: bulk.slice(MAX_BULK_TASKS).map((t) => t.taskId), bulk: true },
    { ids: other.map((t) => t.taskId), bulk: true },
  ]);
  // With a worker of the type that cannot read batches, each bulk task goes alone, as a plain message.
  sent.length = 0;
  bulkLimit = 1;
  await Promise.all(bulk.slice(0, 2).map((t) => batcher.add(t, { bulk: true })));
  assert.deepEqual(sent, bulk.slice(0, 2).map((t) => ({ ids: [t.taskId], bulk: false })));
});

Deno.test("a bulk message carries the bulk header, and reads back as its tasks", () => {
  const tasks = [_task(), _task(), _task()].map((task) => ({ task, json: JSON.stringify(task) }));
  const headers = (message: { props: Record<string, unknown> }) =>
    message.props.headers as Record<string, unknown> | undefined;
  const bulk = tasksToTheirQueue("q", tasks, { bulk: true });
  assert.equal(headers(bulk)?.[BULK_HEADER], true);
  assert.equal(headers(bulk)?.[TASKS_HEADER], 3);
  assert.deepEqual(readTasks(bulk.body), tasks.map((t) => t.task));
  assert.equal(headers(tasksToTheirQueue("q", tasks))?.[BULK_HEADER], undefined);
  // A single task is a plain task message, bulk or not.
  assert.equal(headers(tasksToTheirQueue("q", tasks.slice(0, 1), { bulk: true })), undefined);
});

Deno.test("the bulk cap is the fairness cap while a live worker of the type does not share bulks out", () => {
  const workers = new WorkerRegistry();
  const beat = (
    pid: number,
    more: { types?: string[]; batches?: boolean; bulks?: boolean } = {},
  ) =>
    workers.heard({
      worker: `w${pid}`,
      host: "h",
      pid,
      concurrency: 8,
      inProgress: 0,
      processed: 0,
      failed: 0,
      startedAt: "",
      at: "",
      stopping: false,
      types: more.types ?? ["echo"],
      stopped: false,
      batches: more.batches ?? true,
      bulks: more.bulks ?? true,
    });
  assert.equal(workers.bulkLimit("echo"), Infinity, "no worker known");
  beat(1);
  assert.equal(workers.bulkLimit("echo"), Infinity, "a worker of concurrency 8 shares bulks out");
  beat(2, { types: ["sleep"], batches: false });
  assert.equal(workers.bulkLimit("echo"), Infinity);
  assert.equal(workers.bulkLimit("sleep"), 1);
  beat(3, { bulks: false });
  assert.equal(workers.bulkLimit("echo"), 2, "a worker older than bulks: the fairness cap");
  beat(4, { batches: false, bulks: false });
  assert.equal(workers.bulkLimit("echo"), 1);
});

Deno.test("with no message awaiting its confirm, the batcher publishes before the next turn", async () => {
  const { batcher, sent } = _batcher({ maxTasks: 8 });
  const a = _task();
  const b = _task();
  const done = Promise.all([batcher.add(a), batcher.add(b)]);
  // Before the next turn: at the end of this callback (a nextTick queued after the adds).
  const sentAtOnce = await new Promise<number>((resolve) =>
    process.nextTick(() => resolve(sent.length))
  );
  assert.equal(sentAtOnce, 1);
  await done;
  // The tasks of one callback still go together.
  assert.deepEqual(sent, [[a.taskId, b.taskId]]);
});

Deno.test("while a message awaits its confirm, the batcher waits for the end of the turn", async () => {
  const confirm = Promise.withResolvers<void>();
  let calls = 0;
  const { batcher, sent } = _batcher({ maxTasks: 8 }, () => {
    calls++;
    return calls === 1 ? confirm.promise : Promise.resolve();
  });
  const first = batcher.add(_task());
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(sent.length, 1);
  const later = batcher.add(_task());
  await new Promise((resolve) => process.nextTick(resolve));
  assert.equal(sent.length, 1, "published before the end of the turn under load");
  await later;
  assert.equal(sent.length, 2);
  confirm.resolve();
  await first;
});

Deno.test("addMany tells each task its own message's outcome by its index, with one call per task", async () => {
  const { batcher, sent } = _batcher(
    { maxTasks: 2 },
    (tasks) => tasks.length === 2 ? Promise.reject(new Error("nack")) : Promise.resolve(),
  );
  const tasks = [_task(), _task({ type: "text" }), _task(), _task({ priority: 3 })];
  const told: [number, string][] = [];
  const all = Promise.withResolvers<void>();
  batcher.addMany(tasks, {
    settled: (index, error) => {
      told.push([index, error === undefined ? "ok" : String(error)]);
      if (told.length === tasks.length) all.resolve();
    },
  });
  await all.promise;
  // Two echo tasks of priority 0 share a message, which fails; the text task and the priority 3 one go alone.
  assert.deepEqual(sent.map((ids) => ids.length).sort(), [1, 1, 2]);
  assert.deepEqual(told.sort(([a], [b]) => a - b), [
    [0, "Error: nack"],
    [1, "ok"],
    [2, "Error: nack"],
    [3, "ok"],
  ]);
});

Deno.test("addMany sends a task whose cap is 1 alone, at once, and tells its outcome", async () => {
  const { batcher, sent } = _batcher({ maxTasks: 1 });
  const tasks = [_task(), _task()];
  const told: number[] = [];
  const all = Promise.withResolvers<void>();
  batcher.addMany(tasks, {
    settled: (index, error) => {
      assert.equal(error, undefined);
      told.push(index);
      if (told.length === tasks.length) all.resolve();
    },
  });
  assert.equal(sent.length, 2);
  await all.promise;
  assert.deepEqual(told.sort(), [0, 1]);
});
