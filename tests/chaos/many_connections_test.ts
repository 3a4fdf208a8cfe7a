/**
 * Chaos: a thousand clients connect at once and each submits a task. Every connection is accepted, every
 * submit answered and every result delivered to its own connection; none is dropped.
 *
 * Each connection costs a file descriptor in this process and one in the server: `ulimit -n` must allow
 * both (it is read and reported).
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { report, resultCounts, scaled, tempDir, waitUntil } from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();

async function openFilesLimit(): Promise<number> {
  const out = await new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  return text === "unlimited" ? Infinity : Number(text);
}

Deno.test({
  name: "a thousand concurrent connections each submitting are all answered and none is dropped",
  ...rabbit,
  async fn() {
    const started = Date.now();
    const count = scaled(1_000);
    const limit = await openFilesLimit();
    assert.ok(
      limit > count + 200,
      `ulimit -n is ${limit}: too low for ${count} connections (one descriptor each, here and in the server)`,
    );
    await using queues = uniqueQueues("conns");
    await using data = await tempDir();
    // Every connection comes from 127.0.0.1: lift the per-address cap above the count.
    await using server = await startServer(queues, [
      "--data-dir",
      data.path,
      "--max-connections-per-address",
      String(count + 10),
    ]);
    await using _w1 = await startWorker("w1", queues, ["--quiet"]);
    await using _w2 = await startWorker("w2", queues, ["--quiet"]);
    await using stack = new AsyncDisposableStack();

    const clients = await Promise.all(
      Array.from({ length: count }, async () => stack.use(await RawClient.connect(server.port))),
    );
    // All of them at once: a hello and a submit each, in one write.
    await Promise.all(clients.map((client, i) =>
      client.sendRaw(
        JSON.stringify({ type: "hello", id: "h", client: { name: `c${i}`, kind: "web" } }) + "\n" +
          JSON.stringify({
            type: "submit",
            id: "s",
            task: { type: "echo", payload: { message: `conexión ${i}` } },
          }) + "\n",
      )
    ));
    await waitUntil(
      () => clients.every((c) => resultCounts(c.frames).size === 1),
      `a result on each of the ${count} connections`,
      120_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));

    let duplicated = 0;
    let dropped = 0;
    clients.forEach((client, i) => {
      const welcome = client.frames.find((f) => f.id === "h");
      const accepted = client.frames.find((f) => f.id === "s");
      assert.equal(welcome?.type, "welcome", JSON.stringify(client.frames));
      assert.equal(accepted?.type, "accepted", JSON.stringify(client.frames));
      const results = client.frames.filter((f) => f.type === "result");
      duplicated += Math.max(0, results.length - 1);
      assert.equal(results[0]?.taskId, accepted.taskId);
      assert.deepEqual(results[0]?.output, { message: `conexión ${i}` });
      if (client.closedByPeer) dropped++;
    });
    await report({
      escenario: "conexiones simultáneas",
      tareas: count,
      fallos: `${count} conexiones abiertas a la vez, cada una con una tarea (ulimit -n ${limit})`,
      resultados: clients.filter((c) => resultCounts(c.frames).size === 1).length,
      duplicadosEntregados: duplicated,
      perdidas: 0,
      ms: Date.now() - started,
      notas: `${dropped} conexiones cerradas por el servidor`,
    });
    assert.equal(duplicated, 0, "one result per connection");
    assert.equal(dropped, 0, "no connection was dropped");
  },
});
