/**
 * Integration: a worker whose connection to RabbitMQ is cut (through a TCP proxy) while it runs tasks. The
 * deliveries of the closed channel are stale: settling them does nothing (a delivery tag acked on the
 * channel of the next connection would be a channel error there), a late success is still reported, and a
 * late failure publishes neither a retry nor a dead letter, since the broker requeued the task.
 */
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { deadLetterQueue, retryQueue, typeQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { connectServerBroker } from "../../shared/adapters/rabbitmq/server_broker.ts";
import {
  deleteQueues,
  deleteTopology,
  queueDepth,
  typeQueuesDepth,
} from "../../shared/adapters/rabbitmq/topology.ts";
import { connectWorkerBroker } from "../../shared/adapters/rabbitmq/worker_broker.ts";
import type { TaskDelivery } from "../../shared/ports.ts";
import { QUEUE_FORMAT, type ResultBatch, type TaskMessage } from "../../shared/queue_messages.ts";
import { sleepTask } from "../../shared/tasks/sleep.ts";
import { TaskRegistry } from "../../worker/registry.ts";
import { TaskRunner } from "../../worker/runner.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";

const rabbit = await needsRabbit();

const TYPES = ["sleep"];
const RETRY_BASE_MS = 50;

function _task(ms: number): TaskMessage {
  return {
    v: QUEUE_FORMAT,
    taskId: crypto.randomUUID(),
    type: "sleep",
    payload: { ms },
    client: { name: "corte", kind: "cli" },
    origin: "srv-corte",
    priority: 0,
    timeoutMs: 10_000,
    submittedAt: new Date().toISOString(),
    attempt: 1,
    maxAttempts: 3,
    deliveries: 1,
  };
}

async function _waitUntil(check: () => boolean | Promise<boolean>, what: string, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await delay(20);
  }
}

Deno.test({
  name:
    "a worker cut from RabbitMQ mid-task drops the settles of its stale deliveries, reports a late success once, turns a late failure into no retry, and keeps serving",
  ...rabbit,
  async fn() {
    const id = crypto.randomUUID().slice(0, 8);
    const names = { taskQueue: `stale_${id}_tasks`, resultQueue: `stale_${id}_results` };
    const sleepQueue = typeQueue(names.taskQueue, "sleep");
    await using stack = new AsyncDisposableStack();
    stack.defer(() => deleteTopology(AMQP_URL, names, TYPES));
    stack.defer(() => deleteQueues(AMQP_URL, [retryQueue(sleepQueue, RETRY_BASE_MS)]));

    const batches: ResultBatch[] = [];
    const server = await connectServerBroker({
      url: AMQP_URL,
      ...names,
      serverId: `srv-${id}`,
      taskTypes: TYPES,
      onResults: (batch) => {
        batches.push(batch);
        return Promise.resolve();
      },
    });
    stack.defer(() => server.drain());

    const target = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
    const proxy = stack.use(
      new TcpProxy({ hostname: target.hostname, port: Number(target.port || 5672) }),
    );
    proxy.restore();
    const viaProxy = new URL(AMQP_URL);
    viaProxy.hostname = "127.0.0.1";
    viaProxy.port = String(proxy.port);

    // `ms` 1 fails and 2 succeeds, each once its gate opens; the first two deliveries run, later ones wait.
    const gate = Promise.withResolvers<void>();
    const registry = new TaskRegistry().register(sleepTask, async ({ ms }) => {
      await gate.promise;
      if (ms === 1) throw new Error("Late failure after the cut");
      return { sleptMs: ms };
    });
    stack.defer(() => registry.close());
    const runner = new TaskRunner({
      name: "cortado",
      registry,
      verbose: false,
      retryBaseMs: RETRY_BASE_MS,
    });
    const first: TaskDelivery[] = [];
    const later: TaskDelivery[] = [];
    const broker = await connectWorkerBroker({
      url: viaProxy.href,
      ...names,
      taskTypes: TYPES,
      prefetch: 10,
      onTask: (delivery) => {
        if (first.length < 2) {
          first.push(delivery);
          runner.handle(delivery);
        } else later.push(delivery);
      },
    });
    runner.attach(broker);
    stack.defer(() => broker.drain());

    const failing = _task(1);
    const succeeding = _task(2);
    await server.publishTask(failing);
    await server.publishTask(succeeding);
    await _waitUntil(() => runner.inProgress === 2, "both tasks running");

    await proxy.cut();
    await _waitUntil(() => first.every((d) => broker.isStale(d)), "the deliveries to go stale");
    proxy.restore();
    // The only consumer gets both tasks again on its new connection.
    await _waitUntil(() => later.length === 2, "both tasks redelivered after the reconnect");
    assert.ok(later.every((d) => d.redelivered && !broker.isStale(d)));

    gate.resolve();
    await runner.drain(10_000);
    await _waitUntil(
      () => batches.some((b) => b.results.some((r) => r.taskId === succeeding.taskId)),
      "the late success",
    );
    // Long enough for a retry copy (RETRY_BASE_MS) to come back, had one been published.
    await delay(RETRY_BASE_MS * 10);

    const results = batches.flatMap((b) => b.results);
    assert.deepEqual(results.map((r) => [r.taskId, r.status]), [[succeeding.taskId, "succeeded"]]);
    assert.deepEqual(batches.flatMap((b) => b.retrying), [], "no retry of a stale delivery");
    assert.equal(later.length, 2, "no copy of the failed task came back");
    assert.equal(await queueDepth(AMQP_URL, deadLetterQueue(names.taskQueue)), 0);

    // Settling stale deliveries is a no-op, and the new channel keeps working: the redeliveries are acked.
    for (const d of first) broker.ack(d);
    for (const d of later) broker.ack(d);
    await _waitUntil(
      async () => (await typeQueuesDepth(AMQP_URL, { ...names, types: TYPES })) === 0,
      "the redeliveries to be acked on the new channel",
    );
    assert.ok(later.every((d) => !broker.isStale(d)), "the new channel is still open");
  },
});
