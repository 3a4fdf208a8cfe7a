/**
 * End to end: `--queue-type quorum` on the server and the workers. The task, retry, dead-letter and result
 * queues are quorum queues with an explicit delivery limit; tasks run, a failing one is retried through a
 * quorum retry queue and lands in the dead-letter queue, and `dlq reintentar` runs it again.
 */
import assert from "node:assert/strict";
import amqp from "amqplib";
import { TaskClient } from "../../client.ts";
import {
  deadLetterQueue,
  QUORUM_DELIVERY_LIMIT,
  retryQueue,
  typeQueue,
} from "../../shared/adapters/rabbitmq/names.ts";
import { deleteQueues } from "../../shared/adapters/rabbitmq/topology.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { POISON } from "../_helpers/chaos_worker.ts";
import { startChaosWorker, tempDir } from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();
const RETRY_BASE_MS = 100;

/**
 * Whether `queue` was declared with these arguments: a passive check does not say, but declaring it again
 * with different ones fails (PRECONDITION_FAILED), on a channel of its own.
 */
async function declaredWith(queue: string, args: Record<string, unknown>): Promise<boolean> {
  const conn = await amqp.connect(AMQP_URL);
  conn.on("error", () => {});
  try {
    const ch = await conn.createChannel();
    ch.on("error", () => {});
    await ch.assertQueue(queue, { durable: true, arguments: args });
    return true;
  } catch {
    return false;
  } finally {
    await conn.close().catch(() => {});
  }
}

Deno.test({
  name:
    "with --queue-type quorum, tasks run through quorum queues with a delivery limit, retries and the DLQ work, and dlq reintentar runs a task again",
  ...rabbit,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using queues = uniqueQueues("quorum");
    await using data = await tempDir();
    await using stack = new AsyncDisposableStack();
    const echoQueue = typeQueue(queues.taskQueue, "echo");
    stack.defer(() =>
      deleteQueues(AMQP_URL, [
        retryQueue(echoQueue, RETRY_BASE_MS),
        retryQueue(echoQueue, 2 * RETRY_BASE_MS),
      ]).catch(() => {})
    );
    const quorum = ["--queue-type", "quorum"];
    const server = stack.use(await startServer(queues, ["--data-dir", data.path, ...quorum]));
    const buggy = stack.use(
      await startChaosWorker("quorum-fallo", queues, [
        ...quorum,
        "--retry-base-ms",
        String(RETRY_BASE_MS),
      ]),
    );
    const client = new TaskClient({ host: "127.0.0.1", port: server.port });
    stack.defer(() => client.close());

    const outputs = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => client.run("echo", { message: i }, { priority: i % 10 }),
      ),
    );
    assert.deepEqual(outputs.map((o) => o.message), Array.from({ length: 50 }, (_, i) => i));

    const poison = await client.submit("echo", { message: POISON });
    const failed = await client.result(poison);
    assert.equal(failed.status, "failed");
    assert.equal(failed.attempts, 3);
    const dead = await client.deadLetters();
    assert.deepEqual(dead.map((d) => d.taskId), [poison]);

    // The queues are quorum queues: declaring them again as quorum with the same arguments succeeds, and as
    // classic ones fails.
    const typeArgs = {
      "x-queue-type": "quorum",
      "x-delivery-limit": QUORUM_DELIVERY_LIMIT,
      "x-dead-letter-exchange": "",
      "x-dead-letter-routing-key": deadLetterQueue(queues.taskQueue),
    };
    assert.ok(await declaredWith(echoQueue, typeArgs));
    assert.ok(!(await declaredWith(echoQueue, { ...typeArgs, "x-queue-type": "classic" })));
    assert.ok(await declaredWith(queues.resultQueue, { "x-queue-type": "quorum" }));
    assert.ok(await declaredWith(deadLetterQueue(queues.taskQueue), { "x-queue-type": "quorum" }));
    assert.ok(
      await declaredWith(retryQueue(echoQueue, RETRY_BASE_MS), {
        "x-queue-type": "quorum",
        "x-message-ttl": RETRY_BASE_MS,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": echoQueue,
      }),
    );

    // The bug is fixed: a real worker takes over and the requeued task succeeds.
    await buggy.stop();
    stack.use(await startWorker("quorum-bueno", queues, quorum));
    assert.deepEqual(await client.requeueDeadLetters([poison]), [poison]);
    const again = await client.result(poison);
    assert.equal(again.status, "succeeded");
  },
});
