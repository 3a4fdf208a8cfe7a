/**
 * End to end: the `TaskClient` library against the real server, workers and RabbitMQ.
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import { ColmenaError } from "../../shared/errors.ts";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";

const rabbit = await needsRabbit();

Deno.test({
  name: "TaskClient runs typed tasks, queries them by id, and rebuilds wire errors as ColmenaError",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("lib");
    await using server = await startServer(queues);
    await using _w1 = await startWorker("worker1", queues);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port, kind: "mobile" });

    const welcome = await client.connect();
    assert.ok(welcome.taskTypes.includes("hash"));

    const text = await client.run("text", { text: "hola mundo" });
    assert.deepEqual(text, { words: 2, reversed: "odnum aloh", upper: "HOLA MUNDO" });
    const stats = await client.run("numbers", { numbers: [2, 4, 9] });
    assert.equal(stats.avg, 5);

    const seen: string[] = [];
    const unsubscribe = client.onResult((r) => seen.push(r.taskId));
    const taskId = await client.submit("sleep", { ms: 20 }, { priority: 7 });
    const result = await client.result<"sleep">(taskId);
    unsubscribe();
    assert.equal(result.status, "succeeded");
    if (result.status === "succeeded") assert.ok(result.output.sleptMs >= 19);
    assert.deepEqual(seen, [taskId]);

    const view = await client.status(taskId);
    assert.equal(view.status, "succeeded");
    assert.equal(view.priority, 7);
    assert.equal(view.client.kind, "mobile");
    assert.equal(view.worker, "worker1");

    await assert.rejects(
      () => client.status("00000000-0000-0000-0000-000000000000"),
      (err) => err instanceof ColmenaError && err.code === "NOT_FOUND",
    );
    await assert.rejects(
      // @ts-expect-error: the types reject it too; the server must as well.
      () => client.run("numbers", { numbers: "uno" }),
      (err) => err instanceof ColmenaError && err.code === "INVALID_PAYLOAD",
    );
    // The same client keeps working after errors; many tasks in flight at once.
    const outputs = await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.run("echo", { message: i })),
    );
    assert.deepEqual(outputs.map((o) => o.message), Array.from({ length: 200 }, (_, i) => i));
    assert.ok((await client.ping()) >= 0);
  },
});

Deno.test({
  name: "TaskClient rejects with CONNECTION_CLOSED when no server listens",
  async fn() {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    await using client = new TaskClient({ host: "127.0.0.1", port });
    await assert.rejects(
      () => client.run("echo", { message: 1 }),
      (err) => err instanceof ColmenaError && err.code === "CONNECTION_CLOSED",
    );
  },
});

Deno.test({
  name:
    "TaskClient slows down to the server's rate limit: submits refused with RATE_LIMITED are sent again and all run",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("client-rate");
    // 20 requests per second, 5 saved up: 30 submits at once cannot all pass at first.
    await using server = await startServer(queues, ["--rate-limit", "20", "--rate-burst", "5"]);
    await using _worker = await startWorker("w1", queues, ["--quiet"]);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port });
    const outputs = await Promise.all(
      Array.from({ length: 30 }, (_, i) => client.run("echo", { message: i })),
    );
    assert.deepEqual(outputs, Array.from({ length: 30 }, (_, i) => ({ message: i })));
    const many = await client.submitMany(
      Array.from({ length: 3 }, (_, i) => ({ type: "echo", payload: { message: `m${i}` } })),
    );
    assert.ok(many.every((item) => item.ok), JSON.stringify(many));
  },
});
