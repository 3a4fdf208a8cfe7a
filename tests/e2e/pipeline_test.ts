/**
 * End to end: the real server and two real workers against the real RabbitMQ, driven by a raw-socket client
 * that speaks the protocol by hand.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { typeQueuesDepth } from "../../shared/adapters/rabbitmq/topology.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

function sha256Chain(data: string, iterations: number): string {
  let digest = createHash("sha256").update(data, "utf8").digest();
  for (let i = 1; i < iterations; i++) digest = createHash("sha256").update(digest).digest();
  return digest.toString("hex");
}

Deno.test({
  name:
    "every task type goes client → server → RabbitMQ → worker → back, and both workers get work",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("types");
    await using server = await startServer(queues);
    await using w1 = await startWorker("worker1", queues, ["--concurrency", "10"]);
    await using w2 = await startWorker("worker2", queues, ["--concurrency", "10"]);
    await using client = await RawClient.connect(server.port);

    await client.send({ type: "hello", id: "h", client: { name: "e2e", kind: "web" } });
    const welcome = await client.reply("h");
    assert.equal(welcome.type, "welcome");
    assert.equal(welcome.protocol, 1);
    assert.deepEqual(welcome.taskTypes, ["text", "numbers", "echo", "sleep", "hash"]);
    assert.match(String(welcome.serverId), /^srv-/);

    const text = await client.submit("1", "text", { text: "  hola   mundo\tde 👍🏽 🇪🇸 " });
    const numbers = await client.submit("2", "numbers", { numbers: [4, 8, 15, 16, 23, 42] });
    const echo = await client.submit("3", "echo", { message: { a: [1, null, "ñ"], b: true } });
    const sleep = await client.submit("4", "sleep", { ms: 50 });
    const hash = await client.submit("5", "hash", { data: "colmena", iterations: 1000 });
    const hashOnce = await client.submit("6", "hash", { data: "abc" });

    const r1 = await client.result(text);
    assert.equal(r1.status, "succeeded");
    assert.equal(r1.taskType, "text");
    assert.deepEqual(r1.output, {
      words: 5,
      reversed: " 🇪🇸 👍🏽 ed\todnum   aloh  ",
      upper: "  HOLA   MUNDO\tDE 👍🏽 🇪🇸 ",
    });
    assert.deepEqual((await client.result(numbers)).output, {
      count: 6,
      sum: 108,
      avg: 18,
      min: 4,
      max: 42,
    });
    assert.deepEqual((await client.result(echo)).output, {
      message: { a: [1, null, "ñ"], b: true },
    });
    const slept = await client.result(sleep);
    assert.ok((slept.output as { sleptMs: number }).sleptMs >= 49);
    assert.ok((slept.durationMs as number) >= 49);
    assert.deepEqual((await client.result(hash)).output, { sha256: sha256Chain("colmena", 1000) });
    assert.deepEqual((await client.result(hashOnce)).output, {
      sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    });

    // Spread: with 10 slots each, 40 sleeping tasks cannot all sit on one worker at once.
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push(await client.submit(`s${i}`, "sleep", { ms: 30 }));
    const workers = new Set<string>();
    for (const id of ids) {
      const result = await client.result(id);
      assert.equal(result.status, "succeeded");
      workers.add(String(result.worker));
    }
    assert.deepEqual([...workers].sort(), ["worker1", "worker2"]);

    // The status of a finished task comes from the server, with its output and client kind.
    await client.send({ type: "status", id: "st", taskId: numbers });
    const view = await client.reply("st");
    assert.equal(view.type, "task");
    assert.equal(view.status, "succeeded");
    assert.equal(view.taskType, "numbers");
    assert.deepEqual(view.client, { name: "e2e", kind: "web" });
    assert.deepEqual((view.output as { sum: number }).sum, 108);
    assert.ok(w1.lines.some((l) => l.includes("[worker1] ✓")));
    assert.ok(w2.lines.some((l) => l.includes("[worker2] ✓")));
  },
});

Deno.test({
  name: "a result is pushed only to the connection that submitted it",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("route");
    await using server = await startServer(queues);
    await using _worker = await startWorker("worker1", queues);
    await using a = await RawClient.connect(server.port);
    await using b = await RawClient.connect(server.port);
    const ta = await a.submit("1", "echo", { message: "para a" });
    const tb = await b.submit("1", "echo", { message: "para b" });
    assert.deepEqual((await a.result(ta)).output, { message: "para a" });
    assert.deepEqual((await b.result(tb)).output, { message: "para b" });
    assert.ok(!a.frames.some((f) => f.taskId === tb));
    assert.ok(!b.frames.some((f) => f.taskId === ta));
  },
});

Deno.test({
  name: "results reach the submitting client when two servers share the broker",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("multi");
    await using s1 = await startServer(queues);
    await using s2 = await startServer(queues);
    await using _worker = await startWorker("worker1", queues);
    await using c1 = await RawClient.connect(s1.port);
    await using c2 = await RawClient.connect(s2.port);
    const n = 100;
    const pending: Promise<void>[] = [];
    for (const [client, tag] of [[c1, "uno"], [c2, "dos"]] as const) {
      for (let i = 0; i < n; i++) {
        pending.push((async () => {
          const taskId = await client.submit(`${tag}-${i}`, "echo", { message: `${tag}-${i}` });
          const result = await client.result(taskId, 20_000);
          assert.deepEqual(result.output, { message: `${tag}-${i}` });
        })());
      }
    }
    await Promise.all(pending);
    assert.equal(c1.frames.filter((f) => f.type === "result").length, n);
    assert.equal(c2.frames.filter((f) => f.type === "result").length, n);
  },
});

Deno.test({
  name: "higher-priority tasks waiting in the queue run before lower-priority ones",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("prio");
    await using server = await startServer(queues);
    await using _worker = await startWorker("worker1", queues, ["--concurrency", "1"]);
    await using client = await RawClient.connect(server.port);
    // The blocker occupies the only slot while the others queue up behind it.
    const blocker = await client.submit("b", "sleep", { ms: 400 });
    const low: string[] = [];
    const high: string[] = [];
    for (let i = 0; i < 5; i++) {
      low.push(await client.submit(`l${i}`, "echo", { message: `low ${i}` }, { priority: 0 }));
    }
    for (let i = 0; i < 5; i++) {
      high.push(await client.submit(`h${i}`, "echo", { message: `high ${i}` }, { priority: 9 }));
    }
    for (const id of [blocker, ...low, ...high]) await client.result(id);
    const order = client.frames.filter((f) => f.type === "result").map((f) => f.taskId as string);
    assert.equal(order[0], blocker);
    const done = order.slice(1);
    const lastHigh = Math.max(...high.map((id) => done.indexOf(id)));
    const firstLow = Math.min(...low.map((id) => done.indexOf(id)));
    assert.ok(lastHigh < firstLow, `high before low, got ${JSON.stringify(done)}`);
  },
});

Deno.test({
  name: "a worker stopped with SIGTERM finishes the task it holds before it exits",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("term");
    await using server = await startServer(queues);
    const worker = await startWorker("worker1", queues);
    await using client = await RawClient.connect(server.port);
    const taskId = await client.submit("1", "sleep", { ms: 700 });
    // Wait until the worker has it, then ask it to stop.
    for (let i = 0; i < 50; i++) {
      await client.send({ type: "status", id: `st${i}`, taskId });
      if ((await client.reply(`st${i}`)).status === "running") break;
      await new Promise((r) => setTimeout(r, 20));
    }
    worker.kill("SIGTERM");
    const result = await client.result(taskId);
    assert.equal(result.status, "succeeded");
    assert.equal(result.worker, "worker1");
    const status = await worker.status;
    await worker.stop();
    assert.equal(status.code, 0);
    assert.ok(worker.lines.some((l) => l.includes("1 tareas procesadas")));
  },
});

Deno.test({
  name:
    "a task cancelled while no worker runs is dropped, never run, by a worker that starts later",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("late");
    await using server = await startServer(queues);
    await using client = await RawClient.connect(server.port);
    const taskId = await client.submit("s", "sleep", { ms: 300 });
    await client.send({ type: "cancel", id: "c", taskId });
    const reply = await client.reply("c");
    assert.equal(reply.cancelled, true, JSON.stringify(reply));
    assert.equal((await client.result(taskId)).status, "cancelled");

    // The worker was not connected when the cancel went out.
    await using worker = await startWorker("tardio", queues);
    const short = taskId.slice(0, 8);
    const line = await worker.waitFor(new RegExp(`(⊘|✓|✗).* sleep ${short}.*`));
    assert.match(line[0], new RegExp(`⊘ sleep ${short} cancelada`), worker.lines.join("\n"));
    // Dropped and acked: nothing waits in the queue, and a task sent now runs as usual.
    assert.equal(await typeQueuesDepth(AMQP_URL, { ...queues, types: ["sleep"] }), 0);
    const next = await client.submit("n", "sleep", { ms: 1 });
    assert.equal((await client.result(next)).status, "succeeded");
    const view = await client.reply(await statusOf(client, taskId));
    assert.equal(view.status, "cancelled");
    assert.equal(view.output, undefined, "the handler never ran: no sleptMs");
    assert.equal(client.frames.filter((f) => f.type === "result" && f.taskId === taskId).length, 1);
    assert.ok(!worker.lines.some((l) => l.includes(`✓ sleep ${short}`)));
  },
});

/** Sends a `status` for `taskId` and returns the request id to await. */
async function statusOf(client: RawClient, taskId: string): Promise<string> {
  const id = `st-${crypto.randomUUID().slice(0, 8)}`;
  await client.send({ type: "status", id, taskId });
  return id;
}

Deno.test({
  name:
    "status, cancel and watch take a unique 8-character prefix of a task id and reply with the full id",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("short");
    await using server = await startServer(queues);
    await using client = await RawClient.connect(server.port);
    const taskId = await client.submit("s", "sleep", { ms: 10 });
    const short = taskId.slice(0, 8);

    await client.send({ type: "status", id: "q", taskId: short.toUpperCase() });
    const view = await client.reply("q");
    assert.equal(view.type, "task", JSON.stringify(view));
    assert.equal(view.taskId, taskId);

    await client.send({ type: "watch", id: "w", taskIds: [short, taskId] });
    const watching = await client.reply("w");
    assert.deepEqual(watching.taskIds, [taskId]);
    assert.deepEqual(watching.missing, []);

    await client.send({ type: "cancel", id: "c", taskId: short });
    const cancelled = await client.reply("c");
    assert.equal(cancelled.type, "cancelled", JSON.stringify(cancelled));
    assert.equal(cancelled.taskId, taskId);
    assert.equal(cancelled.cancelled, true);
    assert.equal((await client.result(taskId)).status, "cancelled");

    // Seven characters are no prefix, and neither is anything but hex digits and "-".
    for (const [id, bad] of [["n1", taskId.slice(0, 7)], ["n2", `${short}%`]] as const) {
      await client.send({ type: "status", id, taskId: bad });
      assert.equal((await client.reply(id)).code, "NOT_FOUND");
    }
  },
});
