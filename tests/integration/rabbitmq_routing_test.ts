/**
 * Integration: tasks are routed by type against the real RabbitMQ. Each type has its own queue; a worker
 * consumes only the types it lists, with one prefetch shared across them; retries, dead-letter requeues and
 * tasks no worker runs yet all stay with their type's queue.
 */
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { retryQueue, typeQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { connectServerBroker } from "../../shared/adapters/rabbitmq/server_broker.ts";
import {
  deleteQueues,
  deleteTopology,
  queueDepth,
  typeQueuesDepth,
} from "../../shared/adapters/rabbitmq/topology.ts";
import {
  connectWorkerBroker,
  type RabbitWorkerBroker,
} from "../../shared/adapters/rabbitmq/worker_broker.ts";
import type { ServerBroker, TaskDelivery } from "../../shared/ports.ts";
import { QUEUE_FORMAT, type TaskMessage } from "../../shared/queue_messages.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";

const rabbit = await needsRabbit();

const TYPES = ["echo", "sleep"];

function _names() {
  const id = crypto.randomUUID().slice(0, 8);
  return { taskQueue: `route_${id}_tasks`, resultQueue: `route_${id}_results` };
}

function _task(type: string, overrides: Partial<TaskMessage> = {}): TaskMessage {
  return {
    v: QUEUE_FORMAT,
    taskId: crypto.randomUUID(),
    type,
    payload: type === "sleep" ? { ms: 1 } : { message: "hola" },
    client: { name: "rutas", kind: "cli" },
    origin: "srv-rutas",
    priority: 0,
    timeoutMs: 1_000,
    submittedAt: new Date().toISOString(),
    attempt: 1,
    maxAttempts: 3,
    deliveries: 1,
    ...overrides,
  };
}

/** Polls `check` until it holds, or fails after `ms`. */
async function _waitUntil(check: () => boolean | Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await delay(20);
  }
}

function _server(names: { taskQueue: string; resultQueue: string }): Promise<ServerBroker> {
  return connectServerBroker({
    url: AMQP_URL,
    ...names,
    serverId: `srv-${crypto.randomUUID().slice(0, 8)}`,
    taskTypes: TYPES,
    onResults: () => {},
  });
}

/** A worker broker that records what it receives, acking each delivery unless `hold`. */
async function _worker(
  names: { taskQueue: string; resultQueue: string },
  options: { taskTypes: string[]; prefetch?: number; hold?: boolean },
): Promise<{ broker: RabbitWorkerBroker; got: TaskDelivery[] }> {
  const got: TaskDelivery[] = [];
  const self: { broker?: RabbitWorkerBroker } = {};
  const broker = await connectWorkerBroker({
    url: AMQP_URL,
    ...names,
    taskTypes: options.taskTypes,
    prefetch: options.prefetch ?? 10,
    onTask: (delivery) => {
      got.push(delivery);
      // Never called before the broker is returned (see `WorkerBrokerOptions.onTask`).
      if (!options.hold) self.broker!.ack(delivery);
    },
  });
  self.broker = broker;
  return { broker, got };
}

function _types(got: readonly TaskDelivery[]): string[] {
  return got.map((d) => d.task?.type ?? "(ilegible)");
}

Deno.test({
  name: "a worker for echo never receives a sleep task, and a worker for sleep gets it",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    stack.defer(() => deleteTopology(AMQP_URL, names, TYPES));
    const server = await _server(names);
    stack.defer(() => server.drain());
    const echo = await _worker(names, { taskTypes: ["echo"] });
    stack.defer(() => echo.broker.drain());
    const sleep = await _worker(names, { taskTypes: ["sleep"] });
    stack.defer(() => sleep.broker.drain());

    for (let i = 0; i < 5; i++) {
      await server.publishTask(_task("sleep"));
      await server.publishTask(_task("echo"));
    }
    await _waitUntil(() => echo.got.length === 5 && sleep.got.length === 5, "every task");
    assert.deepEqual(_types(echo.got), Array(5).fill("echo"));
    assert.deepEqual(_types(sleep.got), Array(5).fill("sleep"));
    assert.equal(await typeQueuesDepth(AMQP_URL, { ...names, types: TYPES }), 0);
  },
});

Deno.test({
  name: "a task of a type no worker runs waits in its queue and runs once a worker for it connects",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    stack.defer(() => deleteTopology(AMQP_URL, names, TYPES));
    const server = await _server(names);
    stack.defer(() => server.drain());
    // An echo worker is connected; none runs sleep yet.
    const echo = await _worker(names, { taskTypes: ["echo"] });
    stack.defer(() => echo.broker.drain());
    const task = _task("sleep");
    await server.publishTask(task);
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 1);
    assert.equal(echo.got.length, 0);

    const sleep = await _worker(names, { taskTypes: ["sleep"] });
    stack.defer(() => sleep.broker.drain());
    await _waitUntil(() => sleep.got.length === 1, "the sleep task");
    assert.equal(sleep.got[0]?.task?.taskId, task.taskId);
    assert.equal(echo.got.length, 0);
  },
});

Deno.test({
  name: "a worker's prefetch bounds the deliveries it holds across all its type queues",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    stack.defer(() => deleteTopology(AMQP_URL, names, TYPES));
    const server = await _server(names);
    stack.defer(() => server.drain());
    for (let i = 0; i < 5; i++) {
      await server.publishTask(_task("echo"));
      await server.publishTask(_task("sleep"));
    }
    const worker = await _worker(names, { taskTypes: TYPES, prefetch: 3, hold: true });
    stack.defer(() => worker.broker.drain());
    const ready = () => typeQueuesDepth(AMQP_URL, { ...names, types: TYPES });
    // With a per-consumer prefetch it would hold 3 of each type (6); shared by the channel, 3 in all.
    await _waitUntil(async () => worker.got.length >= 3 && (await ready()) === 7, "3 held");
    assert.equal(worker.got.length, 3);
    // Settling one makes room for exactly one more.
    worker.broker.ack(worker.got[0]!);
    await _waitUntil(async () => worker.got.length >= 4 && (await ready()) === 6, "a 4th");
    assert.equal(worker.got.length, 4);
  },
});

Deno.test({
  name: "a retry waits in its type's retry queue and comes back to that type's queue",
  ...rabbit,
  async fn() {
    const names = _names();
    const sleepQueue = typeQueue(names.taskQueue, "sleep");
    await using stack = new AsyncDisposableStack();
    stack.defer(() => deleteTopology(AMQP_URL, names, TYPES));
    stack.defer(() => deleteQueues(AMQP_URL, [retryQueue(sleepQueue, 50)]));
    const server = await _server(names);
    stack.defer(() => server.drain());
    const echo = await _worker(names, { taskTypes: ["echo"] });
    stack.defer(() => echo.broker.drain());
    const sleep = await _worker(names, { taskTypes: ["sleep"] });
    stack.defer(() => sleep.broker.drain());

    const task = _task("sleep");
    await server.publishTask(task);
    await _waitUntil(() => sleep.got.length === 1, "the first attempt");
    await sleep.broker.publishTaskCopy({ ...task, attempt: 2 }, 50);
    // The retry queue of `sleep`, which dead-letters to the queue of `sleep`.
    assert.notEqual(await queueDepth(AMQP_URL, retryQueue(sleepQueue, 50)), undefined);
    await _waitUntil(() => sleep.got.length === 2, "the second attempt");
    assert.equal(sleep.got[1]?.task?.taskId, task.taskId);
    assert.equal(sleep.got[1]?.task?.attempt, 2);
    assert.equal(echo.got.length, 0, "the echo worker never saw it");
  },
});

Deno.test({
  name: "dlq requeue sends each task back to the queue of its type",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    stack.defer(() => deleteTopology(AMQP_URL, names, TYPES));
    const server = await _server(names);
    stack.defer(() => server.drain());
    const echo = await _worker(names, { taskTypes: ["echo"] });
    stack.defer(() => echo.broker.drain());

    const dead = _task("sleep", { attempt: 3, deliveries: 2 });
    await echo.broker.publishDeadLetter(dead, { code: "TASK_FAILED", message: "falló" });
    const listed = await server.listDeadLetters(10);
    assert.deepEqual(listed.map((d) => [d.taskId, d.taskType]), [[dead.taskId, "sleep"]]);

    const moved = await server.requeueDeadLetters(undefined, 10);
    assert.deepEqual(moved.map((t) => t.taskId), [dead.taskId]);
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "sleep")), 1);
    assert.equal(await queueDepth(AMQP_URL, `${names.taskQueue}.dlq`), 0);
    assert.equal(echo.got.length, 0);

    const sleep = await _worker(names, { taskTypes: ["sleep"] });
    stack.defer(() => sleep.broker.drain());
    await _waitUntil(() => sleep.got.length === 1, "the requeued task");
    assert.equal(sleep.got[0]?.task?.taskId, dead.taskId);
    assert.equal(sleep.got[0]?.task?.attempt, 1);
    assert.equal(sleep.got[0]?.task?.deliveries, 1);
  },
});

Deno.test({
  name: "a worker broker needs at least one task type",
  ...rabbit,
  async fn() {
    await assert.rejects(
      () =>
        connectWorkerBroker({
          url: AMQP_URL,
          ..._names(),
          taskTypes: [],
          prefetch: 1,
          onTask: () => {},
        }),
      RangeError,
    );
  },
});

Deno.test({
  name: "a task of a type the server did not list gets its queue declared instead of being dropped",
  ...rabbit,
  async fn() {
    const names = _names();
    await using stack = new AsyncDisposableStack();
    stack.defer(() => deleteTopology(AMQP_URL, names, [...TYPES, "hash"]));
    const server = await _server(names);
    stack.defer(() => server.drain());
    await server.publishTask(_task("hash"));
    assert.equal(await queueDepth(AMQP_URL, typeQueue(names.taskQueue, "hash")), 1);
  },
});
