/**
 * Integration: `ServerBroker.queueDepths()` against the real RabbitMQ counts what waits in each queue the
 * dashboard and `/metrics` show (a type's queue, a retry queue a worker declared, the dead-letter queue,
 * the result queue), leaves out queues that do not exist, and creates nothing.
 */
import assert from "node:assert/strict";
import { connectServerBroker } from "../../shared/adapters/rabbitmq/server_broker.ts";
import { connectWorkerBroker } from "../../shared/adapters/rabbitmq/worker_broker.ts";
import {
  deleteQueues,
  deleteTopology,
  queueDepth,
} from "../../shared/adapters/rabbitmq/topology.ts";
import { QUEUE_FORMAT, type TaskMessage } from "../../shared/queue_messages.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";

const rabbit = await needsRabbit();

function task(type: string, attempt = 1): TaskMessage {
  return {
    v: QUEUE_FORMAT,
    taskId: crypto.randomUUID(),
    type,
    payload: { message: "hola" },
    client: { name: "profundidad", kind: "cli" },
    origin: "srv-depths",
    priority: 0,
    timeoutMs: 1_000,
    submittedAt: new Date().toISOString(),
    attempt,
    maxAttempts: 3,
    deliveries: 1,
  };
}

Deno.test({
  name:
    "queueDepths counts tasks, retries and dead letters per queue, and leaves out missing queues",
  ...rabbit,
  async fn() {
    const id = crypto.randomUUID().slice(0, 8);
    const names = { taskQueue: `depth_${id}_tasks`, resultQueue: `depth_${id}_results` };
    const server = await connectServerBroker({
      url: AMQP_URL,
      ...names,
      serverId: `srv-${id}`,
      taskTypes: ["echo", "sleep"],
      onResults: () => {},
    });
    const worker = await connectWorkerBroker({
      url: AMQP_URL,
      ...names,
      taskTypes: ["sleep"],
      prefetch: 1,
      onTask: () => {},
    });
    try {
      await server.publishTask(task("echo"));
      await server.publishTask(task("echo"));
      await worker.publishTaskCopy(task("echo", 2), 60_000);
      await worker.publishTaskCopy(task("sleep", 2), 256_000);
      await worker.publishDeadLetter(task("echo", 3), { code: "TIMEOUT", message: "lento" });
      const depths = await server.queueDepths();
      const byQueue = new Map(depths.map((d) => [d.queue, d]));
      assert.deepEqual(byQueue.get(`${names.taskQueue}.echo`), {
        queue: `${names.taskQueue}.echo`,
        kind: "task",
        taskType: "echo",
        messages: 2,
        consumers: 0,
      });
      assert.equal(byQueue.get(`${names.taskQueue}.sleep`)?.consumers, 1);
      assert.equal(
        byQueue.get(`${names.taskQueue}.echo.retry.60000`),
        undefined,
        "not the default backoff",
      );
      assert.equal(byQueue.get(`${names.taskQueue}.dlq`)?.messages, 1);
      assert.equal(byQueue.get(names.resultQueue)?.kind, "result");
      // Retry queues of the default backoff that no worker declared are left out, and not created.
      assert.equal(byQueue.get(`${names.taskQueue}.echo.retry.1000`), undefined);
      assert.equal(await queueDepth(AMQP_URL, `${names.taskQueue}.echo.retry.1000`), undefined);
      assert.deepEqual(byQueue.get(`${names.taskQueue}.sleep.retry.256000`), {
        queue: `${names.taskQueue}.sleep.retry.256000`,
        kind: "retry",
        taskType: "sleep",
        messages: 1,
        consumers: 0,
      });
      assert.equal(server.reconnects, 0);
    } finally {
      await worker.drain();
      await server.drain();
      await deleteTopology(AMQP_URL, names, ["echo", "sleep"]);
      await deleteQueues(AMQP_URL, [`${names.taskQueue}.echo.retry.60000`]);
    }
  },
});
