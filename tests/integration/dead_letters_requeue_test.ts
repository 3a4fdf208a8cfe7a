/**
 * Integration: `dlq requeue` against the real RabbitMQ moves each dead-lettered task once, even when a task it
 * moved fails for good again (and comes back to the end of the dead-letter queue) while the request runs.
 */
import assert from "node:assert/strict";
import amqp from "amqplib";
import { deadLetterTo, requeueDeadLetters } from "../../shared/adapters/rabbitmq/dead_letters.ts";
import { deadLetterQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { confirmPublish } from "../../shared/adapters/rabbitmq/session.ts";
import { declareTopology, deleteTopology } from "../../shared/adapters/rabbitmq/topology.ts";
import { QUEUE_FORMAT, type TaskMessage } from "../../shared/queue_messages.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";

const rabbit = await needsRabbit();

function task(): TaskMessage {
  return {
    v: QUEUE_FORMAT,
    taskId: crypto.randomUUID(),
    type: "echo",
    payload: { message: "otra vez" },
    client: { name: "dlq", kind: "cli" },
    origin: "srv-dlq",
    priority: 0,
    timeoutMs: 1_000,
    submittedAt: new Date().toISOString(),
    attempt: 3,
    maxAttempts: 3,
    deliveries: 1,
  };
}

const FAILED = { code: "INTERNAL", message: "falló" } as const;

for (const selection of ["the first --limite entries", "named task ids"] as const) {
  Deno.test({
    name: `dlq requeue of ${selection} moves each task once when it dies again during the request`,
    ...rabbit,
    async fn() {
      const id = crypto.randomUUID().slice(0, 8);
      const names = { taskQueue: `dlqre_${id}_tasks`, resultQueue: `dlqre_${id}_results` };
      const conn = await amqp.connect(AMQP_URL);
      try {
        const ch = await conn.createConfirmChannel();
        await declareTopology(ch, names);
        const tasks = [task(), task(), task()];
        for (const t of tasks) await confirmPublish(ch, deadLetterTo(names.taskQueue, t, FAILED));
        // Each task dies again as soon as it is requeued: a copy lands at the end of the queue.
        const hook = (t: TaskMessage) =>
          confirmPublish(ch, deadLetterTo(names.taskQueue, { ...t, attempt: 3 }, FAILED));
        const moved = await requeueDeadLetters(conn, {
          taskQueue: names.taskQueue,
          taskIds: selection === "named task ids"
            ? [...tasks.map((t) => t.taskId), "no-esta"]
            : undefined,
          limit: 10,
          beforePublish: hook,
        });
        assert.deepEqual(moved.map((t) => t.taskId), tasks.map((t) => t.taskId));
        // The copies that died again wait in the dead-letter queue for a later request.
        const { messageCount } = await ch.checkQueue(deadLetterQueue(names.taskQueue));
        assert.equal(messageCount, 3);
        await ch.close();
      } finally {
        await conn.close();
        await deleteTopology(AMQP_URL, names, ["echo"]).catch(() => {});
      }
    },
  });
}
