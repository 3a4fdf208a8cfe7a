/**
 * Integration: `deleteTopology` against the real RabbitMQ removes every queue and exchange a worker declares
 * (its type queues and their retry queues included), so that tests (and operators retiring a deployment)
 * leave nothing behind.
 */
import assert from "node:assert/strict";
import amqp from "amqplib";
import { connectWorkerBroker } from "../../shared/adapters/rabbitmq/worker_broker.ts";
import { deleteTopology } from "../../shared/adapters/rabbitmq/topology.ts";
import { QUEUE_FORMAT, type TaskMessage } from "../../shared/queue_messages.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";

const rabbit = await needsRabbit();

/** Whether a queue or an exchange exists: a passive check on a channel of its own (a miss closes it). */
async function exists(conn: amqp.ChannelModel, kind: "queue" | "exchange", name: string) {
  const ch = await conn.createChannel();
  ch.on("error", () => {});
  try {
    if (kind === "queue") await ch.checkQueue(name);
    else await ch.checkExchange(name);
    await ch.close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "deleteTopology removes the queues and the exchanges a worker declares",
  ...rabbit,
  async fn() {
    const id = crypto.randomUUID().slice(0, 8);
    const names = { taskQueue: `topo_${id}_tasks`, resultQueue: `topo_${id}_results` };
    const broker = await connectWorkerBroker({
      url: AMQP_URL,
      ...names,
      taskTypes: ["echo", "sleep"],
      prefetch: 1,
      onTask: () => {},
    });
    // A retry of the default backoff declares `T.echo.retry.1000`.
    const task: TaskMessage = {
      v: QUEUE_FORMAT,
      taskId: crypto.randomUUID(),
      type: "echo",
      payload: { message: "hola" },
      client: { name: "topo", kind: "cli" },
      origin: "srv-topo",
      priority: 0,
      timeoutMs: 1_000,
      submittedAt: new Date().toISOString(),
      attempt: 2,
      maxAttempts: 3,
      deliveries: 1,
    };
    await broker.publishTaskCopy(task, 1_000);
    await broker.drain();
    // The names docs/architecture.md gives the topology.
    const declared: ["queue" | "exchange", string][] = [
      ["queue", `${names.taskQueue}.echo`],
      ["queue", `${names.taskQueue}.sleep`],
      ["queue", `${names.taskQueue}.echo.retry.1000`],
      ["queue", `${names.taskQueue}.dlq`],
      ["queue", names.resultQueue],
      ["exchange", `${names.resultQueue}.replies`],
      ["exchange", `${names.taskQueue}.control`],
      ["exchange", `${names.resultQueue}.heartbeats`],
    ];
    const conn = await amqp.connect(AMQP_URL);
    conn.on("error", () => {});
    try {
      for (const [kind, name] of declared) {
        assert.ok(await exists(conn, kind, name), `${kind} ${name} declared`);
      }
      assert.equal(await exists(conn, "queue", names.taskQueue), false, "no plain task queue");
      await deleteTopology(AMQP_URL, names, ["echo", "sleep"]);
      for (const [kind, name] of declared) {
        assert.equal(await exists(conn, kind, name), false, `${kind} ${name} deleted`);
      }
    } finally {
      await deleteTopology(AMQP_URL, names, ["echo", "sleep"]).catch(() => {});
      await conn.close();
    }
  },
});
