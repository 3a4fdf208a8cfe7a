/**
 * End to end: the `cliente` command line against the real server, workers and RabbitMQ.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";

const rabbit = await needsRabbit();
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function cliente(port: number, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "client.ts", "--port", String(port), ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: "cliente enviar, estado and simular work against a real server and print JSON for scripts",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("cli");
    await using server = await startServer(queues);
    await using _w1 = await startWorker("worker1", queues, ["--quiet"]);
    await using _w2 = await startWorker("worker2", queues, ["--quiet"]);

    const sent = await cliente(server.port, "enviar", "texto", "hola mundo", "--json");
    assert.equal(sent.code, 0, sent.stderr);
    const result = JSON.parse(sent.stdout.trim().split("\n").at(-1)!);
    assert.equal(result.status, "succeeded");
    assert.deepEqual(result.output, { words: 2, reversed: "odnum aloh", upper: "HOLA MUNDO" });

    const state = await cliente(server.port, "estado", result.taskId, "--json");
    assert.equal(state.code, 0, state.stderr);
    assert.equal(JSON.parse(state.stdout.trim().split("\n").at(-1)!).status, "succeeded");

    const missing = await cliente(server.port, "estado", "no-existe");
    assert.equal(missing.code, 1);
    assert.match(missing.stdout + missing.stderr, /No existe ninguna tarea/);

    const sim = await cliente(
      server.port,
      "simular",
      "--clientes",
      "6",
      "--tipos",
      "web,movil",
      "--num-tareas",
      "120",
      "--json",
    );
    assert.equal(sim.code, 0, sim.stderr);
    const summary = JSON.parse(sim.stdout.trim().split("\n").at(-1)!);
    assert.equal(summary.total, 120);
    assert.equal(summary.ok, 120);
    assert.equal(summary.mismatches, 0);
    assert.deepEqual(Object.keys(summary.byKind).sort(), ["mobile", "web"]);
    assert.deepEqual(Object.keys(summary.byWorker).sort(), ["worker1", "worker2"]);
  },
});

Deno.test({
  name: "cliente says how to start the server when none listens, and exits 1",
  async fn() {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    const out = await cliente(port, "enviar", "texto", "hola");
    assert.equal(out.code, 1);
    assert.match(
      out.stdout + out.stderr,
      new RegExp(`Arránquelo con: deno task -q servidor --port ${port}`),
    );
  },
});
