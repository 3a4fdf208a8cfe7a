/**
 * End to end: with a shared signing key, servers and workers sign what they publish to RabbitMQ and reject
 * what is not signed with it, so that anything else that can publish to the broker (guest/guest) cannot
 * forge a result or have a task run.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import amqp from "amqplib";
import { deadLetterQueue, typeQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { MessageSigner, SIGNATURE_HEADER } from "../../shared/adapters/rabbitmq/signing.ts";
import { QUEUE_FORMAT } from "../../shared/queue_messages.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

const KEY = "clave-de-prueba-0123456789-abcdefghijklmnop";

async function keyFile(key = KEY): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempFile({ prefix: "colmena-clave-" });
  await Deno.writeTextFile(path, `${key}\n`);
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path).catch(() => {});
    },
  };
}

async function publishRaw(
  queue: string,
  body: unknown,
  props: Record<string, unknown> = {},
): Promise<void> {
  const conn = await amqp.connect(AMQP_URL);
  try {
    const ch = await conn.createConfirmChannel();
    await new Promise<void>((resolve, reject) =>
      ch.publish("", queue, Buffer.from(JSON.stringify(body)), {
        persistent: true,
        contentType: "application/json",
        ...props,
      }, (err: unknown) => (err ? reject(err) : resolve()))
    );
    await ch.close();
  } finally {
    await conn.close();
  }
}

function forgedResult(taskId: string, origin: string) {
  const now = new Date().toISOString();
  return {
    v: QUEUE_FORMAT,
    results: [{
      taskId,
      taskType: "echo",
      origin,
      status: "succeeded",
      output: { message: "falsificado" },
      worker: "intruso",
      durationMs: 1,
      startedAt: now,
      finishedAt: now,
      attempt: 1,
    }],
  };
}

Deno.test({
  name: "with matching signing keys, a task goes client → server → worker → back as before",
  ...rabbit,
  async fn() {
    await using key = await keyFile();
    await using queues = uniqueQueues("firma");
    await using server = await startServer(queues, ["--clave-firma-fichero", key.path]);
    await using _worker = await startWorker("w-firma", queues, [], {
      COLMENA_SIGNING_KEY_FILE: key.path,
    });
    await using client = await RawClient.connect(server.port);
    await client.send({ type: "hello", id: "h", client: { name: "firma", kind: "cli" } });
    await client.reply("h");
    const taskId = await client.submit("1", "echo", { message: "firmado" });
    const result = await client.result(taskId);
    assert.equal(result.status, "succeeded");
    assert.deepEqual(result.output, { message: "firmado" });
    assert.ok(server.lines.some((l) => /Mensajes con RabbitMQ firmados/.test(l)));
  },
});

Deno.test({
  name:
    "with signing on, a forged result published straight to the result queue is neither recorded nor delivered",
  ...rabbit,
  async fn() {
    await using key = await keyFile();
    await using queues = uniqueQueues("forja");
    // No worker yet: the task stays queued while the forgeries arrive.
    await using server = await startServer(queues, [
      "--clave-firma-fichero",
      key.path,
      "--server-id",
      "srv-forja",
    ]);
    await using client = await RawClient.connect(server.port);
    await client.send({ type: "hello", id: "h", client: { name: "victima", kind: "cli" } });
    await client.reply("h");
    const taskId = await client.submit("1", "echo", { message: "de verdad" });

    // Unsigned, then signed with another key: both rejected.
    await publishRaw(queues.resultQueue, forgedResult(taskId, "srv-forja"));
    const body = Buffer.from(
      JSON.stringify(forgedResult(taskId, "srv-forja")),
    );
    const other = new MessageSigner(new TextEncoder().encode("otra-clave-".repeat(4)));
    await publishRaw(queues.resultQueue, JSON.parse(body.toString()), {
      headers: { [SIGNATURE_HEADER]: other.sign("results", body) },
    });
    await server.waitFor(
      new RegExp(`Mensaje sin firma válida en "${queues.resultQueue.replaceAll(".", "\\.")}"`),
    );
    // A worker with the key starts only now: its genuine result comes after both forgeries in the queue,
    // and the result consumer takes them in order, so the first result delivered would be a forged one.
    await using _worker = await startWorker("w-real", queues, [], { COLMENA_SIGNING_KEY: KEY });
    const result = await client.result(taskId);
    assert.equal(result.worker, "w-real");
    assert.deepEqual(result.output, { message: "de verdad" });
    await client.send({ type: "status", id: "s", taskId });
    const view = await client.reply("s");
    assert.equal(view.worker, "w-real");
    assert.deepEqual(view.output, { message: "de verdad" });
    assert.equal(client.frames.filter((f) => f.type === "result").length, 1);
  },
});

Deno.test({
  name:
    "with signing on, an unsigned task published to a task queue is not run but dead-lettered, and dlq will not requeue it",
  ...rabbit,
  async fn() {
    await using key = await keyFile();
    await using queues = uniqueQueues("sinfirma");
    await using server = await startServer(queues, ["--clave-firma-fichero", key.path]);
    await using worker = await startWorker("w-guardia", queues, [], {
      COLMENA_SIGNING_KEY: KEY,
    });
    const queue = typeQueue(queues.taskQueue, "echo");
    const taskId = crypto.randomUUID();
    await publishRaw(queue, {
      v: QUEUE_FORMAT,
      taskId,
      type: "echo",
      payload: { message: "inyectada" },
      client: { name: "intruso", kind: "cli" },
      origin: "srv-x",
      priority: 0,
      timeoutMs: 30_000,
      submittedAt: new Date().toISOString(),
      attempt: 1,
    }, { messageId: taskId });
    await worker.waitFor(
      new RegExp(`Mensaje sin firma válida en "${queue.replaceAll(".", "\\.")}"`),
    );
    assert.ok(!worker.lines.some((l) => l.includes(taskId.slice(0, 8))), "the task never ran");

    await using client = await RawClient.connect(server.port);
    await client.send({ type: "hello", id: "h", client: { name: "admin", kind: "cli" } });
    await client.reply("h");
    await client.send({ type: "dlq", id: "l", action: "list", limit: 10 });
    const list = await client.reply("l");
    const entries = list.entries as { taskId: string; error: { code: string } | null }[];
    assert.equal(entries.length, 1);
    assert.equal(entries[0]?.error?.code, "UNSIGNED");
    await client.send({ type: "dlq", id: "r", action: "requeue", limit: 10 });
    assert.deepEqual((await client.reply("r")).requeued, []);
    const conn = await amqp.connect(AMQP_URL);
    try {
      const ch = await conn.createChannel();
      assert.equal((await ch.checkQueue(deadLetterQueue(queues.taskQueue))).messageCount, 1);
      await ch.close();
    } finally {
      await conn.close();
    }

    // The worker still runs signed tasks.
    const real = await client.submit("1", "echo", { message: "firmada" });
    assert.equal((await client.result(real)).status, "succeeded");
  },
});
