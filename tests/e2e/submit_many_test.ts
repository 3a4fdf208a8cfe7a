/**
 * End to end: `TaskClient.submitMany` and the `submit_many` frame, with real server and worker processes,
 * the real RabbitMQ and the default SQLite store. Each task of a batch is its own: a bad one gets its own
 * error while the rest are queued and run, each accepted task has its own record and result, and an
 * idempotency key used twice within one batch (or again in a later one) gives the first task, run once.
 *
 * @module
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import { typeQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { queueDepth } from "../../shared/adapters/rabbitmq/topology.ts";
import { MAX_BATCH_TASKS } from "../../shared/protocol.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

Deno.test({
  name:
    "a batch with bad tasks answers each in its place, queues and runs the rest, and keeps one task per idempotency key",
  ...rabbit,
  async fn() {
    await using data = await tempDataDir();
    await using queues = uniqueQueues("many");
    await using server = await startServer(queues, ["--data-dir", data.path]);
    await using _worker = await startWorker("w1", queues, ["--data-dir", data.path, "--quiet"]);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port, name: "lotes" });
    const key = `k-${crypto.randomUUID()}`;
    const items = await client.submitManyUnchecked([
      { type: "echo", payload: { message: "uno" } },
      { type: "no-existe", payload: {} },
      { type: "numbers", payload: { numbers: "no es una lista" } },
      { type: "echo", payload: { message: "primera" }, options: { idempotencyKey: key } },
      { type: "echo", payload: { message: "repetida" }, options: { idempotencyKey: key } },
      { type: "text", payload: { text: "hola mundo" } },
    ]);
    assert.equal(items.length, 6);
    const [one, unknown, invalid, first, repeat, text] = items;
    assert.ok(one?.ok && first?.ok && repeat?.ok && text?.ok, JSON.stringify(items));
    assert.ok(unknown !== undefined && !unknown.ok && invalid !== undefined && !invalid.ok);
    assert.equal(unknown.error.code, "UNKNOWN_TASK_TYPE");
    assert.equal(invalid.error.code, "INVALID_PAYLOAD");
    assert.equal(repeat.taskId, first.taskId, "the same key within one batch gives the first task");
    assert.equal(repeat.duplicate, true);
    assert.equal(first.duplicate, undefined);
    assert.equal(new Set([one.taskId, first.taskId, text.taskId]).size, 3, "own ids");

    for (const item of [one, first, text]) {
      const result = await client.result(item.taskId);
      assert.equal(result.status, "succeeded", JSON.stringify(result));
      const view = await client.status(item.taskId);
      assert.equal(view.status, "succeeded");
      assert.equal(view.attempts, 1);
    }
    const firstResult = await client.result(first.taskId);
    assert.ok(firstResult.status === "succeeded");
    assert.deepEqual(firstResult.output, { message: "primera" });

    // The key again in a later batch: still the first task, nothing new recorded.
    const [again] = await client.submitManyUnchecked([
      { type: "echo", payload: { message: "primera" }, options: { idempotencyKey: key } },
    ]);
    assert.ok(again?.ok);
    assert.equal(again.taskId, first.taskId);
    assert.equal(again.duplicate, true);
    assert.equal(again.payloadDiffers, false);
    const page = await client.list({ clientName: "lotes" });
    assert.equal(page.items.length, 3, JSON.stringify(page.items.map((t) => t.taskId)));
  },
});

Deno.test({
  name:
    "with no worker, a batch travels in one bulk message, and sent again with its keys it gets the same tasks and queues nothing more",
  ...rabbit,
  async fn() {
    await using data = await tempDataDir();
    await using queues = uniqueQueues("many-bulk");
    // A repeat of a key whose task was never noted published would be published again once this passed.
    await using server = await startServer(queues, [
      "--data-dir",
      data.path,
      "--publish-retry-ms",
      "0",
    ]);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port, name: "bulto" });
    const stem = crypto.randomUUID();
    const tasks = Array.from({ length: 60 }, (_, i) => ({
      type: "echo",
      payload: { message: `m${i}` },
      options: { idempotencyKey: `${stem}-${i}` },
    }));
    const first = await client.submitManyUnchecked(tasks);
    const ids = first.map((item) => {
      assert.ok(item.ok && item.duplicate === undefined, JSON.stringify(item));
      return item.taskId;
    });
    assert.equal(new Set(ids).size, 60);
    const queue = typeQueue(queues.taskQueue, "echo");
    assert.equal(await queueDepth(AMQP_URL, queue), 1, "one bulk message for the 60 tasks");
    const again = await client.submitManyUnchecked(tasks);
    again.forEach((item, i) => {
      assert.ok(item.ok && item.duplicate === true, JSON.stringify(item));
      assert.equal(item.taskId, ids[i]);
      assert.equal(item.payloadDiffers, false);
    });
    assert.equal(await queueDepth(AMQP_URL, queue), 1, "nothing published again");
    for (const id of [ids[0]!, ids[59]!]) {
      assert.equal((await client.status(id)).status, "queued");
    }
  },
});

Deno.test({
  name: "submitMany splits a large batch into frames and every task runs once with its own result",
  ...rabbit,
  async fn() {
    await using data = await tempDataDir();
    await using queues = uniqueQueues("many-big");
    await using server = await startServer(queues, ["--data-dir", data.path]);
    await using _worker = await startWorker("w1", queues, ["--data-dir", data.path, "--quiet"]);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port });
    const count = MAX_BATCH_TASKS + 234;
    const items = await client.submitMany(
      Array.from({ length: count }, (_, i) => ({ type: "echo", payload: { message: `m${i}` } })),
    );
    const ids = items.map((item) => {
      assert.ok(item.ok, JSON.stringify(item));
      return item.taskId;
    });
    assert.equal(new Set(ids).size, count);
    const results = await Promise.all(ids.map((id) => client.result<"echo">(id)));
    results.forEach((result, i) => {
      assert.ok(result.status === "succeeded", JSON.stringify(result));
      assert.deepEqual(result.output, { message: `m${i}` });
    });
  },
});

Deno.test({
  name:
    "one frame of 600 tasks (several slices) answers bad tasks in their places, at slice edges too, and a key repeated across slices gives the first task",
  ...rabbit,
  async fn() {
    await using data = await tempDataDir();
    await using queues = uniqueQueues("many-slices");
    await using server = await startServer(queues, ["--data-dir", data.path]);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port, name: "tramos" });
    const count = 600;
    const bad = new Set([0, 249, 250, 499, 500, 599]);
    const key = `k-${crypto.randomUUID()}`;
    const tasks = Array.from(
      { length: count },
      (_, i) =>
        bad.has(i)
          ? { type: "numbers", payload: { numbers: "no es una lista" } }
          : i === 10 || i === 260
          ? { type: "echo", payload: { message: "clave" }, options: { idempotencyKey: key } }
          : { type: "echo", payload: { message: `m${i}` } },
    );
    const items = await client.submitManyUnchecked(tasks);
    assert.equal(items.length, count);
    items.forEach((item, i) => {
      if (bad.has(i)) {
        assert.ok(
          !item.ok && item.error.code === "INVALID_PAYLOAD",
          `${i}: ${JSON.stringify(item)}`,
        );
      } else assert.ok(item.ok, `${i}: ${JSON.stringify(item)}`);
    });
    const first = items[10];
    const repeat = items[260];
    assert.ok(first?.ok && repeat?.ok);
    assert.equal(
      repeat.taskId,
      first.taskId,
      "the key's second use, in a later slice, is the first task",
    );
    assert.equal(repeat.duplicate, true);
    const ids = items.flatMap((item) => item.ok ? [item.taskId] : []);
    assert.equal(new Set(ids).size, count - bad.size - 1, "every other task has its own id");
    for (const i of [1, 248, 251, 498, 501, 598]) {
      const item = items[i];
      assert.ok(item?.ok);
      assert.equal((await client.status(item.taskId)).status, "queued", `${i} is recorded`);
    }
  },
});

Deno.test({
  name: "a submit_many frame past the batch limit is refused whole, and nothing is recorded",
  ...rabbit,
  async fn() {
    await using data = await tempDataDir();
    await using queues = uniqueQueues("many-limit");
    await using server = await startServer(queues, ["--data-dir", data.path]);
    await using raw = await RawClient.connect(server.port);
    const task = { task: { type: "echo", payload: { message: "x" } } };
    await raw.send({
      type: "submit_many",
      id: "big",
      tasks: Array.from({ length: MAX_BATCH_TASKS + 1 }, () => task),
    });
    const reply = await raw.reply("big");
    assert.equal(reply.type, "error");
    assert.equal(reply.code, "INVALID_MESSAGE");
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port });
    assert.equal((await client.list({})).items.length, 0);
  },
});

Deno.test({
  name: "each task of a submit_many counts against the connection's rate limit",
  ...rabbit,
  async fn() {
    await using data = await tempDataDir();
    await using queues = uniqueQueues("many-rate");
    await using server = await startServer(queues, [
      ...["--data-dir", data.path, "--rate-limit", "1", "--rate-burst", "20"],
    ]);
    await using raw = await RawClient.connect(server.port);
    await raw.send({ type: "hello", id: "h", client: { name: "ritmo", kind: "cli" } });
    await raw.reply("h");
    const tasks = Array.from({ length: 15 }, () => ({
      task: { type: "echo", payload: { message: "x" } },
    }));
    await raw.send({ type: "submit_many", id: "m1", tasks });
    const first = await raw.reply("m1");
    assert.equal(first.type, "accepted_many", JSON.stringify(first));
    // 20 saved up: the hello took 1 and the first batch 15; 15 more are not there.
    await raw.send({ type: "submit_many", id: "m2", tasks });
    const second = await raw.reply("m2");
    assert.equal(second.type, "error", JSON.stringify(second));
    assert.equal(second.code, "RATE_LIMITED");
  },
});
