/**
 * Integration: tasks published in one turn travel in batch messages against the real RabbitMQ. The server
 * packs them per type and priority within its caps; a worker splits each batch into one delivery per task,
 * runs no more than its concurrency at once, and acknowledges the message once all its tasks are settled:
 * failures, retries, cancellations, redeliveries and shutdown hand-backs stay per task.
 */
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { deadLetterQueue, retryQueue, typeQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { connectServerBroker } from "../../shared/adapters/rabbitmq/server_broker.ts";
import {
  deleteQueues,
  deleteTopology,
  queueDepth,
} from "../../shared/adapters/rabbitmq/topology.ts";
import {
  connectWorkerBroker,
  type RabbitWorkerBroker,
} from "../../shared/adapters/rabbitmq/worker_broker.ts";
import { taskJson, tasksToTheirQueue } from "../../shared/adapters/rabbitmq/task_route.ts";
import { confirmPublish } from "../../shared/adapters/rabbitmq/session.ts";
import type { ServerBroker, TaskDelivery } from "../../shared/ports.ts";
import {
  QUEUE_FORMAT,
  type ResultBatch,
  type ResultMessage,
  type RetryNotice,
  type TaskMessage,
} from "../../shared/queue_messages.ts";
import { sleepTask } from "../../shared/tasks/sleep.ts";
import { TaskRegistry } from "../../worker/registry.ts";
import { TaskRunner } from "../../worker/runner.ts";
import { WorkerRegistry } from "../../server/worker_registry.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import amqp from "amqplib";

const rabbit = await needsRabbit();

const TYPES = ["sleep"];
const RETRY_BASE_MS = 30;

interface Names {
  taskQueue: string;
  resultQueue: string;
}

function _names(): Names {
  const id = crypto.randomUUID().slice(0, 8);
  return { taskQueue: `lotes_${id}_tasks`, resultQueue: `lotes_${id}_results` };
}

function _task(overrides: Partial<TaskMessage> = {}): TaskMessage {
  return {
    v: QUEUE_FORMAT,
    taskId: crypto.randomUUID(),
    type: "sleep",
    payload: { ms: 1 },
    client: { name: "lotes", kind: "cli" },
    origin: "srv-lotes",
    priority: 0,
    timeoutMs: 10_000,
    submittedAt: new Date().toISOString(),
    attempt: 1,
    maxAttempts: 3,
    deliveries: 1,
    ...overrides,
  };
}

async function _waitUntil(check: () => boolean | Promise<boolean>, what: string, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await delay(20);
  }
}

/** A server broker that packs up to `batch` tasks per message and collects every report it consumes. */
async function _server(
  stack: AsyncDisposableStack,
  names: Names,
  options: { batch?: number; batchLimit?: (type: string) => number } = {},
): Promise<{ broker: ServerBroker; results: ResultMessage[]; retrying: RetryNotice[] }> {
  const results: ResultMessage[] = [];
  const retrying: RetryNotice[] = [];
  const broker = await connectServerBroker({
    url: AMQP_URL,
    ...names,
    serverId: `srv-${crypto.randomUUID().slice(0, 8)}`,
    taskTypes: TYPES,
    tasksPerMessage: options.batch ?? 32,
    ...(options.batchLimit === undefined ? {} : { batchLimit: options.batchLimit }),
    onResults: (batch: ResultBatch) => {
      results.push(...batch.results);
      retrying.push(...batch.retrying);
      return Promise.resolve();
    },
  });
  stack.defer(() => broker.drain());
  return { broker, results, retrying };
}

/** How a test's `sleep` handler behaves for one task; it resolves with the task's output. */
type Behaviour = (ctx: { signal: AbortSignal; attempt: number }) => Promise<void>;

/**
 * A worker (broker and runner) whose `sleep` handler runs the behaviour given for each task id (a short
 * wait by default) and records every run, how many ran at once, and what it was delivered.
 */
async function _worker(
  stack: AsyncDisposableStack,
  names: Names,
  options: {
    concurrency: number;
    behaviour?: Map<string, Behaviour>;
    url?: string;
    onDelivery?: (d: TaskDelivery) => boolean;
  },
) {
  const runs: { taskId: string; attempt: number }[] = [];
  const delivered: TaskDelivery[] = [];
  const state = { now: 0, max: 0 };
  const registry = new TaskRegistry().register(sleepTask, async ({ ms }, ctx) => {
    runs.push({ taskId: ctx.taskId, attempt: ctx.attempt });
    state.now++;
    state.max = Math.max(state.max, state.now);
    try {
      const behave = options.behaviour?.get(ctx.taskId);
      if (behave === undefined) await delay(ms);
      else await behave({ signal: ctx.signal, attempt: ctx.attempt });
    } finally {
      state.now--;
    }
    return { sleptMs: ms };
  });
  stack.defer(() => registry.close());
  const runner = new TaskRunner({
    name: `w-${crypto.randomUUID().slice(0, 4)}`,
    registry,
    verbose: false,
    retryBaseMs: RETRY_BASE_MS,
  });
  const broker: RabbitWorkerBroker = await connectWorkerBroker({
    url: options.url ?? AMQP_URL,
    ...names,
    taskTypes: TYPES,
    prefetch: options.concurrency,
    onTask: (delivery) => {
      delivered.push(delivery);
      if (options.onDelivery?.(delivery) === false) return;
      runner.handle(delivery);
    },
    onControl: (message, publishedAt) => {
      if (message.type === "cancel") runner.cancel(message.taskIds, publishedAt);
    },
  });
  runner.attach(broker);
  let drained = false;
  const drain = async () => {
    if (drained) return;
    drained = true;
    await broker.stopConsuming();
    await runner.drain(5_000);
    await broker.drain();
  };
  /** For a test that closed the broker itself: waits for the runs left (their deliveries are stale). */
  const forget = () => {
    drained = true;
    return runner.drain(5_000);
  };
  stack.defer(drain);
  return { broker, runner, runs, delivered, state, drain, forget };
}

function _cleanup(stack: AsyncDisposableStack, names: Names): void {
  stack.defer(() => deleteTopology(AMQP_URL, names, TYPES));
  stack.defer(() =>
    deleteQueues(AMQP_URL, [retryQueue(typeQueue(names.taskQueue, "sleep"), RETRY_BASE_MS)])
  );
}

function _count(ids: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/** Asserts that each task has exactly one result and that it has the status expected. */
function _onceEach(
  results: readonly ResultMessage[],
  tasks: readonly TaskMessage[],
  failed: ReadonlySet<string> = new Set(),
) {
  const counts = _count(results.map((r) => r.taskId));
  for (const task of tasks) {
    assert.equal(counts.get(task.taskId), 1, `one result for ${task.taskId}`);
    const result = results.find((r) => r.taskId === task.taskId)!;
    assert.equal(result.status, failed.has(task.taskId) ? "failed" : "succeeded");
  }
  assert.equal(results.length, tasks.length, "no result for a task that was not sent");
}

Deno.test({
  name:
    "tasks published in one turn leave in fewer messages than tasks, and each task gets its result once",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names, { batch: 8 });
    const tasks = Array.from({ length: 20 }, () => _task());
    await Promise.all(tasks.map((t) => server.broker.publishTask(t)));
    // 20 tasks at 8 per message: 8 + 8 + 4.
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 3);

    const worker = await _worker(stack, names, { concurrency: 10 });
    await _waitUntil(() => server.results.length >= 20, "every result");
    await delay(100);
    _onceEach(server.results, tasks);
    assert.equal(worker.delivered.length, 20);
    assert.ok(worker.delivered.every((d) => !d.redelivered));
    await _waitUntil(
      async () => (await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep"))) === 0,
      "the queue to empty",
    );
  },
});

Deno.test({
  name:
    "inside a batch a failing task fails alone, a retried task runs once more, and the others succeed",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names, { batch: 8 });
    const ok = [_task(), _task(), _task()];
    const invalid = _task({ payload: { ms: -1 } });
    const flaky = _task();
    const tasks = [ok[0]!, invalid, ok[1]!, flaky, ok[2]!];
    await Promise.all(tasks.map((t) => server.broker.publishTask(t)));
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 1);

    const behaviour = new Map<string, Behaviour>([[flaky.taskId, ({ attempt }) => {
      if (attempt === 1) return Promise.reject(new Error("Fails on its first attempt"));
      return Promise.resolve();
    }]]);
    const worker = await _worker(stack, names, { concurrency: 10, behaviour });
    await _waitUntil(() => server.results.length >= 5, "every result");
    await delay(200);
    _onceEach(server.results, tasks, new Set([invalid.taskId]));
    assert.equal(
      server.results.find((r) => r.taskId === invalid.taskId)?.error?.code,
      "INVALID_PAYLOAD",
    );
    assert.equal(server.results.find((r) => r.taskId === flaky.taskId)?.attempt, 2);
    assert.deepEqual(server.retrying.map((r) => [r.taskId, r.attempt]), [[flaky.taskId, 1]]);
    // The handler ran once for each good task and twice for the flaky one (never for the invalid payload).
    const runs = _count(worker.runs.map((r) => r.taskId));
    for (const t of ok) assert.equal(runs.get(t.taskId), 1);
    assert.equal(runs.get(flaky.taskId), 2);
    assert.equal(runs.get(invalid.taskId), undefined);
  },
});

Deno.test({
  name:
    "a batch redelivered after its worker's channel closed is split into single copies and every task finishes",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names, { batch: 8 });
    const tasks = Array.from({ length: 6 }, () => _task({ timeoutMs: 1_000 }));
    // On the first worker every task waits until it times out, after that worker's channel is gone.
    const hang: Behaviour = ({ signal }) =>
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    const first = await _worker(stack, names, {
      concurrency: 10,
      behaviour: new Map(tasks.map((t) => [t.taskId, hang])),
    });
    await Promise.all(tasks.map((t) => server.broker.publishTask(t)));
    await _waitUntil(() => first.runner.inProgress === 6, "the six tasks running");
    // The channel closes with the batch unacknowledged: RabbitMQ requeues it whole.
    await first.broker.drain();
    stack.defer(() => first.forget());

    const second = await _worker(stack, names, { concurrency: 10 });
    await _waitUntil(() => server.results.length >= 6, "every result");
    await delay(1_200);
    _onceEach(server.results, tasks);
    // It got the batch again (each task redelivered), then each task alone with one more delivery counted.
    const redelivered = second.delivered.filter((d) => d.redelivered);
    const copies = second.delivered.filter((d) => !d.redelivered);
    assert.deepEqual(
      redelivered.map((d) => d.task?.taskId).sort(),
      tasks.map((t) => t.taskId).sort(),
    );
    assert.deepEqual(copies.map((d) => d.task?.taskId).sort(), tasks.map((t) => t.taskId).sort());
    assert.ok(copies.every((d) => d.task?.deliveries === 2));
    assert.equal(second.runs.length, 6);
  },
});

Deno.test({
  name:
    "a worker shutting down with a batch half run hands back the unstarted tasks as single messages that another worker runs",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names, { batch: 8 });
    const gate = Promise.withResolvers<void>();
    const fast = _task();
    const slow = [_task(), _task()];
    const unstarted = [_task(), _task(), _task()];
    const tasks = [fast, slow[0]!, slow[1]!, ...unstarted];
    const wait: Behaviour = () => gate.promise;
    const first = await _worker(stack, names, {
      concurrency: 2,
      behaviour: new Map(slow.map((t) => [t.taskId, wait])),
    });
    await Promise.all(tasks.map((t) => server.broker.publishTask(t)));
    // The fast task ends and is reported; both slow ones then hold the worker's two slots.
    await _waitUntil(
      () => server.results.some((r) => r.taskId === fast.taskId) && first.runner.inProgress === 2,
      "the fast task done and both slow ones running",
    );
    const stopping = first.drain();
    await delay(100);
    gate.resolve();
    await stopping;
    assert.deepEqual(first.runs.map((r) => r.taskId), [fast.taskId, ...slow.map((t) => t.taskId)]);

    const second = await _worker(stack, names, { concurrency: 2 });
    await _waitUntil(() => server.results.length >= 6, "every result");
    await delay(200);
    _onceEach(server.results, tasks);
    assert.deepEqual(
      second.delivered.map((d) => d.task?.taskId).sort(),
      unstarted.map((t) => t.taskId).sort(),
    );
    // Handed back as copies, not as a redelivery: the tasks keep their delivery count.
    assert.ok(second.delivered.every((d) => !d.redelivered && d.task?.deliveries === 1));
  },
});

Deno.test({
  name:
    "a task cancelled while its batch waits in the queue is dropped, and the rest of the batch runs",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names, { batch: 8 });
    const tasks = Array.from({ length: 5 }, () => _task());
    const cancelled = tasks[2]!;
    await Promise.all(tasks.map((t) => server.broker.publishTask(t)));
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 1);
    await server.broker.publishControl({ type: "cancel", taskIds: [cancelled.taskId] });

    const worker = await _worker(stack, names, { concurrency: 10 });
    const others = tasks.filter((t) => t !== cancelled);
    await _waitUntil(() => server.results.length >= 4, "the other results");
    await _waitUntil(
      async () => (await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep"))) === 0,
      "the batch to be acknowledged",
    );
    _onceEach(server.results, others);
    assert.ok(!worker.runs.some((r) => r.taskId === cancelled.taskId));
  },
});

Deno.test({
  name: "a worker of concurrency 2 given batches of 8 never runs more than 2 tasks at once",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names, { batch: 8 });
    const tasks = Array.from({ length: 24 }, () => _task({ payload: { ms: 10 } }));
    await Promise.all(tasks.map((t) => server.broker.publishTask(t)));
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 3);

    const worker = await _worker(stack, names, { concurrency: 2 });
    await _waitUntil(() => server.results.length >= 24, "every result", 30_000);
    _onceEach(server.results, tasks);
    assert.equal(worker.state.max, 2);
  },
});

Deno.test({
  name:
    "a worker that joins a queue of batches takes a few messages, not its concurrency in messages, and leaves the rest to other workers",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names, { batch: 8 });
    const release = Promise.withResolvers<void>();
    const slow: Behaviour = () => release.promise;
    const tasks = Array.from({ length: 160 }, () => _task());
    await Promise.all(tasks.map((t) => server.broker.publishTask(t)));
    const queue = typeQueue(names.taskQueue, "sleep");
    assert.equal(await queueDepth(AMQP_URL, queue), 20);

    const behaviour = new Map(tasks.map((t) => [t.taskId, slow]));
    const first = await _worker(stack, names, { concurrency: 16, behaviour });
    await _waitUntil(() => first.state.now === 16, "the first worker running 16 tasks");
    await delay(300);
    // 16 messages (128 tasks) would fit a prefetch of 16; a start-up prefetch of 4 lets in 32 tasks.
    const left = (await queueDepth(AMQP_URL, queue)) ?? 0;
    assert.ok(left >= 16, `${left} messages left for other workers`);

    const second = await _worker(stack, names, { concurrency: 16, behaviour });
    await _waitUntil(() => second.state.now === 16, "the second worker running 16 tasks too");
    release.resolve();
    await _waitUntil(() => server.results.length >= 160, "every result", 30_000);
    _onceEach(server.results, tasks);
  },
});

Deno.test({
  name:
    "with a worker of concurrency 1 alive, the server publishes one task per message (fairness cap)",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const workers = new WorkerRegistry();
    const beat = (concurrency: number) =>
      workers.heard({
        worker: `w${concurrency}`,
        host: "h",
        pid: concurrency,
        concurrency,
        inProgress: 0,
        processed: 0,
        failed: 0,
        startedAt: new Date().toISOString(),
        at: new Date().toISOString(),
        stopping: false,
        types: ["sleep"],
        stopped: false,
        batches: true,
        bulks: true,
      });
    const server = await _server(stack, names, {
      batch: 32,
      batchLimit: (type) => workers.batchLimit(type),
    });
    const queue = typeQueue(names.taskQueue, "sleep");
    beat(1);
    await Promise.all(Array.from({ length: 10 }, () => server.broker.publishTask(_task())));
    assert.equal(await queueDepth(AMQP_URL, queue), 10);
    // A worker of concurrency 40 alone takes batches of 40 / 4 = 10.
    workers.heard({
      worker: "w1",
      host: "h",
      pid: 1,
      concurrency: 1,
      inProgress: 0,
      processed: 0,
      failed: 0,
      startedAt: "",
      at: "",
      stopping: false,
      types: ["sleep"],
      stopped: true,
      batches: true,
      bulks: true,
    });
    beat(40);
    await Promise.all(Array.from({ length: 20 }, () => server.broker.publishTask(_task())));
    assert.equal(await queueDepth(AMQP_URL, queue), 12);
  },
});

Deno.test({
  name:
    "bulk tasks travel in one message past the fairness cap, and a worker shares it out in messages of its fair share before running any",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    // As with no worker known: the fairness cap is 1, so lone tasks go one per message.
    const server = await _server(stack, names, { batch: 8, batchLimit: () => 1 });
    const queue = typeQueue(names.taskQueue, "sleep");
    const tasks = Array.from({ length: 100 }, () => _task());
    await Promise.all(tasks.map((t) => server.broker.publishTask(t, { bulk: true })));
    assert.equal(await queueDepth(AMQP_URL, queue), 1);
    // Shared out without running any: 100 tasks at 2 (a quarter of 8) per message, of which this worker
    // then holds a few (unrun) and hands them back when it stops.
    const idle = await _worker(stack, names, { concurrency: 8, onDelivery: () => false });
    await _waitUntil(
      async () => ((await queueDepth(AMQP_URL, queue)) ?? 0) >= 40,
      "the bulk shared out",
    );
    await idle.drain();
    await _waitUntil(
      async () => (await queueDepth(AMQP_URL, queue)) === 50,
      "50 messages of 2 tasks back in the queue",
    );
    const worker = await _worker(stack, names, { concurrency: 8 });
    await _waitUntil(() => server.results.length >= 100, "every result", 30_000);
    await delay(100);
    _onceEach(server.results, tasks);
    assert.ok(worker.state.max <= 8);
    await _waitUntil(
      async () => (await queueDepth(AMQP_URL, queue)) === 0,
      "the queue to empty",
    );
  },
});

Deno.test({
  name:
    "a worker of small concurrency that takes a bulk keeps only its share, and another worker runs the rest meanwhile",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names, { batch: 8 });
    const release = Promise.withResolvers<void>();
    const slow: Behaviour = () => release.promise;
    const tasks = Array.from({ length: 40 }, () => _task({ timeoutMs: 60_000 }));
    await Promise.all(tasks.map((t) => server.broker.publishTask(t, { bulk: true })));
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 1);
    const behaviour = new Map(tasks.map((t) => [t.taskId, slow]));
    const first = await _worker(stack, names, { concurrency: 4, behaviour });
    await _waitUntil(() => first.state.now === 4, "the first worker running 4 tasks");
    // Holding the whole bulk, the first worker would leave nothing for the second one.
    const second = await _worker(stack, names, { concurrency: 4, behaviour });
    await _waitUntil(() => second.state.now === 4, "the second worker running 4 tasks too");
    release.resolve();
    await _waitUntil(() => server.results.length >= 40, "every result", 30_000);
    await delay(100);
    _onceEach(server.results, tasks);
  },
});

Deno.test({
  name:
    "dlq lists each task of a dead-lettered batch, and requeue moves tasks on their own, acking the batch after every copy",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    _cleanup(stack, names);
    const server = await _server(stack, names);
    const tasks = Array.from({ length: 4 }, () => _task({ attempt: 3 }));
    const batch = tasksToTheirQueue(
      names.taskQueue,
      tasks.map((task) => ({ task, json: taskJson(task) })),
    );
    const conn = await amqp.connect(AMQP_URL);
    try {
      const ch = await conn.createConfirmChannel();
      await confirmPublish(ch, {
        ...batch,
        routingKey: deadLetterQueue(names.taskQueue),
        props: {
          ...batch.props,
          headers: {
            ...(batch.props.headers as Record<string, unknown>),
            "x-colmena-error-code": "TASK_FAILED",
            "x-colmena-error-message": "falló",
          },
        },
      });
      await ch.close();
    } finally {
      await conn.close();
    }
    const dlq = deadLetterQueue(names.taskQueue);
    assert.equal(await queueDepth(AMQP_URL, dlq), 1);

    const listed = await server.broker.listDeadLetters(10);
    assert.deepEqual(listed.map((e) => e.taskId), tasks.map((t) => t.taskId));
    assert.ok(listed.every((e) => e.error?.code === "TASK_FAILED" && e.attempt === 3));
    assert.equal((await server.broker.listDeadLetters(2)).length, 2);

    // Two named tasks go to their queue; the two others stay dead, each now on its own.
    const picked = [tasks[1]!.taskId, tasks[3]!.taskId];
    const moved = await server.broker.requeueDeadLetters(picked, 10);
    assert.deepEqual(moved.map((t) => t.taskId), picked);
    assert.ok(moved.every((t) => t.attempt === 1));
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 2);
    assert.equal(await queueDepth(AMQP_URL, dlq), 2);
    const left = await server.broker.listDeadLetters(10);
    assert.deepEqual(left.map((e) => e.taskId), [tasks[0]!.taskId, tasks[2]!.taskId]);
    assert.ok(left.every((e) => e.error?.code === "TASK_FAILED"));

    const rest = await server.broker.requeueDeadLetters(undefined, 10);
    assert.equal(rest.length, 2);
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 4);
    assert.equal(await queueDepth(AMQP_URL, dlq), 0);
  },
});
