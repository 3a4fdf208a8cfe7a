/**
 * Integration: `deleteTopology` against the real RabbitMQ removes every queue and exchange a worker declares,
 * so that tests (and operators retiring a deployment) leave nothing behind.
 */
import assert from "node:assert/strict";
import amqp from "amqplib";
import { connectWorkerBroker, deleteTopology } from "../../shared/adapters/rabbitmq.ts";
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
      prefetch: 1,
      onTask: () => {},
    });
    await broker.drain();
    // The names docs/architecture.md gives the topology.
    const declared: ["queue" | "exchange", string][] = [
      ["queue", names.taskQueue],
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
      await deleteTopology(AMQP_URL, names);
      for (const [kind, name] of declared) {
        assert.equal(await exists(conn, kind, name), false, `${kind} ${name} deleted`);
      }
    } finally {
      await conn.close();
    }
  },
});
