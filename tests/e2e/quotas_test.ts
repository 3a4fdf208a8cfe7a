/**
 * End to end: quotas per principal. The server runs in this process so that the test can say who is a
 * `cliente` (names starting with `cli-`; the rest are `admin`, as every connection is without tokens), with a
 * real broker and a real worker process. Each breach answers its code, records and publishes nothing, and a
 * well-behaved client is served alongside; `admin` principals are exempt.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connectServerBroker } from "../../shared/adapters/rabbitmq/server_broker.ts";
import { openBlobStore } from "../../shared/blobs.ts";
import { loadConfig } from "../../shared/config.ts";
import { ColmenaServer } from "../../server/app.ts";
import { localPrincipal, type Principal } from "../../server/principal.ts";
import { openTaskStore } from "../../server/stores/open.ts";
import type { TaskStore } from "../../shared/ports.ts";
import { TASK_TYPES } from "../../shared/tasks.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { type Frame, RawClient } from "../_helpers/raw_client.ts";
import type { QueueNames } from "../../shared/adapters/rabbitmq/names.ts";

const rabbit = await needsRabbit();

function principalFor(name: string): Principal {
  return name.startsWith("cli-") ? { name, role: "cliente" } : localPrincipal(name);
}

/** A server in this process on a free port, with a memory store and `args` as its flags. */
async function startInProcess(
  queues: QueueNames,
  dataDir: string,
  args: string[],
): Promise<{ port: number; store: TaskStore } & AsyncDisposable> {
  const config = loadConfig("servidor", {
    args: [
      ...["--host", "127.0.0.1", "--port", "0", "--sin-http", "--store", "memory"],
      ...["--data-dir", dataDir, "--task-queue", queues.taskQueue],
      ...["--result-queue", queues.resultQueue, ...args],
    ],
    env: { AMQP_URL },
  });
  const store = await openTaskStore(config);
  const blobs = await openBlobStore(config);
  const serverId = `srv-${crypto.randomUUID().slice(0, 8)}`;
  const server = new ColmenaServer(config, {
    serverId,
    store,
    blobs,
    principalFor,
    connectBroker: ({ onResults, onHeartbeat }) =>
      connectServerBroker({
        url: AMQP_URL,
        taskQueue: queues.taskQueue,
        resultQueue: queues.resultQueue,
        serverId,
        taskTypes: [...TASK_TYPES],
        onResults,
        onHeartbeat,
      }),
  });
  await server.start();
  return {
    port: server.addr.port,
    store,
    async [Symbol.asyncDispose]() {
      await server.drain(0);
      await store.close();
      await blobs.close();
    },
  };
}

/** A raw client that said `hello` as `name`. */
async function connectAs(port: number, name: string): Promise<RawClient> {
  const client = await RawClient.connect(port);
  await client.send({ type: "hello", id: "h", client: { name, kind: "cli" } });
  assert.equal((await client.reply("h")).type, "welcome");
  return client;
}

/** Sends a submit and returns the reply frame, whatever it is. */
async function submit(
  client: RawClient,
  id: string,
  task: unknown,
  options?: unknown,
): Promise<Frame> {
  await client.send({ type: "submit", id, task, ...(options === undefined ? {} : { options }) });
  return await client.reply(id);
}

/** Task ids the store holds for client `name`. */
async function recorded(store: TaskStore, name: string): Promise<string[]> {
  const page = await store.list({ limit: 500, clientName: name });
  return page.items.map((t) => t.taskId);
}

const ECHO = { type: "echo", payload: { message: "hola" } };

Deno.test({
  name: "quotas refuse a cliente's priority, budget and in-flight breaches with their codes",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("quotas");
    await using data = await tempDataDir();
    await using server = await startInProcess(queues, data.path, [
      ...["--quota-max-priority", "5", "--quota-budget-ms", "250000"],
      ...["--quota-in-flight", "3"],
    ]);
    // Only echo runs: sleep tasks stay queued, in flight, for as long as the test needs.
    await using _worker = await startWorker("w1", queues, ["--solo", "echo", "--quiet"]);
    await using polite = await connectAs(server.port, "ana");
    await using cli = await connectAs(server.port, "cli-bea");

    // Priority above the cliente's highest: permanent, nothing recorded.
    const priority = await submit(cli, "p9", ECHO, { priority: 9 });
    assert.equal(priority.code, "QUOTA_LIMIT", JSON.stringify(priority));
    assert.match(priority.message as string, /prioridad: como mucho 5/);
    assert.equal((await submit(cli, "p5", ECHO, { priority: 5 })).type, "accepted");

    // Attempts × timeout above its budget.
    const budget = await submit(cli, "b", ECHO, { maxAttempts: 20, timeoutMs: 3_600_000 });
    assert.equal(budget.code, "QUOTA_LIMIT", JSON.stringify(budget));
    assert.match(budget.message as string, /intentos × timeout: como mucho 250000 ms/);
    assert.equal((await recorded(server.store, "cli-bea")).length, 1, "only the accepted echo");

    // An admin is exempt: priority 9 and the same budget are accepted, and its result comes.
    const admin = await submit(polite, "a9", ECHO, { priority: 9, maxAttempts: 20 });
    assert.equal(admin.type, "accepted", JSON.stringify(admin));
    assert.equal((await polite.result(admin.taskId as string, 30_000)).status, "succeeded");

    // Tasks in flight: three queued sleeps, then the fourth is refused (retryable).
    await using hog = await connectAs(server.port, "cli-carla");
    const sleeping: string[] = [];
    for (let i = 0; i < 3; i++) {
      const reply = await submit(hog, `s${i}`, { type: "sleep", payload: { ms: 50 } });
      assert.equal(reply.type, "accepted", JSON.stringify(reply));
      sleeping.push(reply.taskId as string);
    }
    const fourth = await submit(hog, "s3", { type: "sleep", payload: { ms: 50 } });
    assert.equal(fourth.code, "QUOTA_EXCEEDED", JSON.stringify(fourth));
    assert.match(fourth.message as string, /tareas en curso: 3 sin terminar/);
    assert.equal(
      (await recorded(server.store, "cli-carla")).length,
      3,
      "the fourth is not recorded",
    );

    // Another cliente has its own count, and is served meanwhile.
    const other = await submit(cli, "e2", ECHO);
    assert.equal(other.type, "accepted");
    assert.equal((await cli.result(other.taskId as string, 30_000)).status, "succeeded");

    // A cancelled task no longer counts: the same submit is accepted now.
    await hog.send({ type: "cancel", id: "c", taskId: sleeping[0] });
    assert.equal((await hog.reply("c")).cancelled, true);
    assert.equal(
      (await submit(hog, "s4", { type: "sleep", payload: { ms: 50 } })).type,
      "accepted",
    );
  },
});

Deno.test({
  name: "quotas refuse a cliente's submits past its rate, and uploads past its count and bytes",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("quotarate");
    await using data = await tempDataDir();
    await using server = await startInProcess(queues, data.path, [
      ...["--quota-submit-rate", "2", "--quota-uploads", "2", "--quota-upload-bytes", "1000"],
    ]);
    await using _worker = await startWorker("w1", queues, ["--quiet"]);
    await using polite = await connectAs(server.port, "ana");
    await using cli = await connectAs(server.port, "cli-dani");

    // Twice the rate may be saved up: of ten submits in one write, some are refused (retryable).
    const lines = Array.from(
      { length: 10 },
      (_, i) => JSON.stringify({ type: "submit", id: `r${i}`, task: ECHO }) + "\n",
    );
    await cli.sendRaw(lines.join(""));
    const replies = await Promise.all(lines.map((_, i) => cli.reply(`r${i}`)));
    const accepted = replies.filter((r) => r.type === "accepted");
    const refused = replies.filter((r) => r.code === "QUOTA_EXCEEDED");
    assert.ok(accepted.length >= 4 && accepted.length < 10, `${accepted.length} accepted`);
    assert.equal(accepted.length + refused.length, 10);
    assert.match(refused[0]!.message as string, /envíos: como mucho 2 por segundo/);
    assert.equal((await recorded(server.store, "cli-dani")).length, accepted.length);

    // An admin is not rate-limited by the quota: ten in one write are all accepted.
    await polite.sendRaw(lines.join(""));
    const adminReplies = await Promise.all(lines.map((_, i) => polite.reply(`r${i}`)));
    assert.ok(adminReplies.every((r) => r.type === "accepted"), JSON.stringify(adminReplies));
    const last = adminReplies.at(-1)!.taskId as string;
    assert.equal((await polite.result(last, 30_000)).status, "succeeded");

    // Uploads per hour: two, then the third is refused.
    await using up = await connectAs(server.port, "cli-eva");
    const small = Buffer.from("hola").toString("base64");
    for (const id of ["u1", "u2"]) {
      await up.send({ type: "upload", id, data: small, last: true });
      assert.equal((await up.reply(id)).type, "uploaded");
    }
    await up.send({ type: "upload", id: "u3", data: small, last: true });
    const third = await up.reply("u3");
    assert.equal(third.code, "QUOTA_EXCEEDED", JSON.stringify(third));
    assert.match(third.message as string, /subidas: como mucho 2 por hora/);

    // Bytes per hour: 600, then 600 more go over 1000 and that upload is dropped.
    await using big = await connectAs(server.port, "cli-fede");
    const piece = Buffer.alloc(600, 0x61).toString("base64");
    await big.send({ type: "upload", id: "b1", data: piece, last: true });
    assert.equal((await big.reply("b1")).type, "uploaded");
    await big.send({ type: "upload", id: "b2", data: piece, last: true });
    const over = await big.reply("b2");
    assert.equal(over.code, "QUOTA_EXCEEDED", JSON.stringify(over));
    assert.match(over.message as string, /bytes subidos: como mucho 1000 por hora/);

    // An admin uploads more than that meanwhile.
    await polite.send({ type: "upload", id: "pa", data: piece + piece, last: true });
    assert.equal((await polite.reply("pa")).type, "uploaded");
  },
});

Deno.test({
  name: "a submit_many counts each of its tasks against the cliente's quota, one by one",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("quotas-batch");
    await using data = await tempDataDir();
    await using server = await startInProcess(queues, data.path, ["--quota-in-flight", "3"]);
    // No worker for sleep: the accepted ones stay in flight.
    await using cli = await connectAs(server.port, "cli-dora");
    const sleep = { type: "sleep", payload: { ms: 50 } };
    await cli.send({
      type: "submit_many",
      id: "m",
      tasks: [{ task: sleep }, { task: sleep, options: { priority: 9 } }, { task: sleep }, {
        task: sleep,
      }, { task: sleep }],
    });
    const reply = await cli.reply("m");
    assert.equal(reply.type, "accepted_many", JSON.stringify(reply));
    const items = reply.items as { taskId?: string; error?: { code: string } }[];
    assert.deepEqual(items.map((i) => i.taskId === undefined ? i.error?.code : "accepted"), [
      "accepted",
      "QUOTA_LIMIT",
      "accepted",
      "accepted",
      "QUOTA_EXCEEDED",
    ]);
    const accepted = items.flatMap((i) => i.taskId === undefined ? [] : [i.taskId]);
    assert.deepEqual(
      (await recorded(server.store, "cli-dora")).sort(),
      accepted.sort(),
      "only the accepted tasks are recorded",
    );
  },
});
