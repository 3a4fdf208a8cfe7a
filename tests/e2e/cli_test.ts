/**
 * End to end: the `cliente` command line against the real server, workers and RabbitMQ.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

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

Deno.test({
  name:
    "cliente historial and estado print another client's hostile name and output with escapes, not raw control codes",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("cli-esc");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using _worker = await startWorker("w-esc", queues, ["--quiet"]);
    const hostile = "\x1b]0;robado\x07\x1b[2J\u202enombre";
    await using client = await RawClient.connect(server.port);
    await client.send({ type: "hello", id: "h", client: { name: hostile, kind: "cli" } });
    await client.reply("h");
    const taskId = await client.submit("1", "echo", { message: hostile });
    await client.result(taskId);

    const history = await cliente(server.port, "historial", "--todas");
    assert.equal(history.code, 0, history.stderr);
    const state = await cliente(server.port, "estado", taskId);
    assert.equal(state.code, 0, state.stderr);
    for (const out of [history.stdout, state.stdout]) {
      assert.ok(!out.includes("\x1b") && !out.includes("\u202e"), JSON.stringify(out));
    }
    assert.match(history.stdout, /\\x1b\]0;robado\\x07/);
    assert.match(state.stdout, /\\x1b\[2J\\u202enombre/);
  },
});
