/**
 * End to end: a submit whose publish reached the broker but whose confirm was lost for the whole retry window
 * gets PUBLISH_UNCONFIRMED (outcome unknown), and resubmitting it with the same idempotency key is safe: the
 * same task, run, with one result.
 */
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";

const rabbit = await needsRabbit();

Deno.test({
  name:
    "a submit whose confirm is lost gets PUBLISH_UNCONFIRMED and a resubmit with its key is safe",
  ...rabbit,
  async fn() {
    const target = new URL(AMQP_URL.replace(/^amqp:/, "http:"));
    await using proxy = new TcpProxy({
      hostname: target.hostname,
      port: Number(target.port || 5672),
    });
    proxy.restore();
    const url = `amqp://${target.username || "guest"}:${
      target.password || "guest"
    }@127.0.0.1:${proxy.port}`;
    await using queues = uniqueQueues("unconfirmed");
    await using server = await startServer(queues, [
      "--amqp-url",
      url,
      "--store",
      "memory",
      "--publish-retry-ms",
      "1500",
    ]);
    await using _worker = await startWorker("worker1", queues);
    await using client = await RawClient.connect(server.port);
    const submit = {
      type: "submit",
      task: { type: "echo", payload: { message: "¿llegó?" } },
      options: { idempotencyKey: "clave-incierta" },
    };

    // The broker looks alive but never answers: the publish leaves, its confirm never comes back.
    proxy.stall();
    await client.send({ ...submit, id: "s1" });
    await delay(300);
    await proxy.cut();
    const unknown = await client.reply("s1", 20_000);
    assert.equal(unknown.type, "error");
    assert.equal(unknown.code, "PUBLISH_UNCONFIRMED");

    proxy.restore();
    // The publishing connection (the consuming one names itself).
    await server.waitFor(/^Reconectado a RabbitMQ$/, 30_000);
    await client.send({ ...submit, id: "s2" });
    const again = await client.reply("s2", 20_000);
    assert.equal(again.type, "accepted", JSON.stringify(again));
    assert.equal(again.duplicate, true);
    const result = await client.result(again.taskId as string, 20_000);
    assert.deepEqual(result.output, { message: "¿llegó?" });
  },
});
