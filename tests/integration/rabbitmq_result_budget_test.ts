/**
 * Integration: the server takes result messages from the real RabbitMQ within a byte budget
 * (`maxResultBytesInFlight`). While its store is stalled it holds about the budget, not a prefetch's worth of
 * messages; large messages pause its consumers and it consumes again once they drain; and every result still
 * reaches the handler once, in the order published, and is acknowledged.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { setTimeout as delay } from "node:timers/promises";
import amqp from "amqplib";
import { type QueueType, serverQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { connectServerBroker } from "../../shared/adapters/rabbitmq/server_broker.ts";
import {
  deleteQueues,
  deleteTopology,
  queueDepth,
} from "../../shared/adapters/rabbitmq/topology.ts";
import type { ResultBatchHandler } from "../../shared/ports.ts";
import { QUEUE_FORMAT, type ResultBatch, type ResultMessage } from "../../shared/queue_messages.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";

const rabbit = await needsRabbit();

/** A consumer's prefetch changes only with a new consumer on both kinds of queue. */
const QUEUE_TYPES: readonly QueueType[] = ["classic", "quorum"];
const OUTPUT_BYTES = 32 * 1024;
const BUDGET_BYTES = 512 * 1024;

function _result(serverId: string, n: number): ResultMessage {
  const now = new Date().toISOString();
  return {
    taskId: `t${String(n).padStart(5, "0")}`,
    taskType: "echo",
    origin: serverId,
    status: "succeeded",
    output: { message: "x".repeat(OUTPUT_BYTES) },
    worker: "w-presupuesto",
    durationMs: 1,
    startedAt: now,
    finishedAt: now,
    attempt: 1,
  };
}

/** Publishes one result batch per entry of `sizes` (results per message); returns the task ids in order. */
async function _publish(
  queue: string,
  serverId: string,
  sizes: readonly number[],
): Promise<string[]> {
  const conn = await amqp.connect(AMQP_URL);
  const ids: string[] = [];
  try {
    const ch = await conn.createConfirmChannel();
    let n = 0;
    for (const size of sizes) {
      const results = Array.from({ length: size }, () => _result(serverId, n++));
      ids.push(...results.map((r) => r.taskId));
      const batch: ResultBatch = {
        v: QUEUE_FORMAT,
        forwarded: false,
        started: [],
        retrying: [],
        results,
      };
      ch.sendToQueue(queue, Buffer.from(JSON.stringify(batch)), { persistent: true });
    }
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
  return ids;
}

/** A server broker on fresh queues whose result handler is `onResults`; disposed with its queues. */
async function _server(onResults: ResultBatchHandler, queueType: QueueType) {
  const id = crypto.randomUUID().slice(0, 8);
  const names = { taskQueue: `budget_${id}_tasks`, resultQueue: `budget_${id}_results` };
  const serverId = `srv-${id}`;
  const broker = await connectServerBroker({
    url: AMQP_URL,
    ...names,
    serverId,
    taskTypes: ["echo"],
    onResults,
    maxResultBytesInFlight: BUDGET_BYTES,
    queueType,
  });
  return {
    broker,
    names,
    serverId,
    async [Symbol.asyncDispose]() {
      await broker.drain();
      await deleteTopology(AMQP_URL, names, ["echo"]);
      await deleteQueues(AMQP_URL, [serverQueue(names.resultQueue, serverId)]);
    },
  };
}

/** Polls `check` until it holds, or fails after `ms`. */
async function _waitUntil(check: () => boolean | Promise<boolean>, what: string, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await delay(20);
  }
}

for (const queueType of QUEUE_TYPES) {
  Deno.test({
    name:
      `while the store is stalled the server holds about its byte budget of results, then records every one in order (${queueType} queues)`,
    ...rabbit,
    async fn() {
      const gate = Promise.withResolvers<void>();
      const got: string[] = [];
      await using server = await _server(async (batch) => {
        got.push(...batch.results.map((r) => r.taskId));
        await gate.promise;
      }, queueType);
      const messages = 80;
      const ids = await _publish(
        server.names.resultQueue,
        server.serverId,
        Array(messages).fill(1),
      );
      await _waitUntil(() => got.length > 0, "the first result");
      // What the broker would push by now, given the room: a prefetch of 500 pushed all 80 (2.5 MiB) at once.
      await delay(1_000);
      const held = got.length;
      const perBudget = Math.ceil(BUDGET_BYTES / OUTPUT_BYTES);
      assert.ok(held <= perBudget + 2, `${held} results of 32 KiB taken with a 512 KiB budget`);

      gate.resolve();
      await _waitUntil(() => got.length >= messages, "every result");
      await _waitUntil(
        async () => await queueDepth(AMQP_URL, server.names.resultQueue) === 0,
        "the result queue to empty",
      );
      assert.deepEqual(got, ids, "each result once, in the order published");
    },
  });

  Deno.test({
    name:
      `result messages larger than the byte budget pause the consumers one at a time and every result still arrives once, in order (${queueType} queues)`,
    ...rabbit,
    async fn() {
      const got: string[] = [];
      let running = 0;
      let peak = 0;
      let largest = 0;
      await using server = await _server(async (batch) => {
        const bytes = JSON.stringify(batch).length;
        largest = Math.max(largest, bytes);
        running += bytes;
        peak = Math.max(peak, running);
        got.push(...batch.results.map((r) => r.taskId));
        await delay(5);
        running -= bytes;
      }, queueType);
      // Small and large (24 results, ~768 KiB, more than the budget) in turn.
      const sizes = Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? 1 : 24));
      const ids = await _publish(server.names.resultQueue, server.serverId, sizes);
      await _waitUntil(() => got.length >= ids.length, "every result");
      await _waitUntil(
        async () => await queueDepth(AMQP_URL, server.names.resultQueue) === 0,
        "the result queue to empty",
      );
      assert.deepEqual(got, ids, "each result once, in the order published");
      // Without the budget the broker pushed all 30 messages (~11 MiB) and their handlers overlapped.
      assert.ok(
        peak <= BUDGET_BYTES + largest,
        `${(peak / 1024).toFixed(0)} KiB in the handler at once with a 512 KiB budget`,
      );
    },
  });
}
