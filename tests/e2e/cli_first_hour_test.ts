/**
 * End to end: what a person sees in the first hour with `deno task cliente` (issue "First hour with
 * colmena"): connection failures named for what they are, and Ctrl-C during `simular`.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";

const rabbit = await needsRabbit();
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `deno task -q cliente …`, as a person runs it: its exit code and output. */
async function cliente(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cliente", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    out: decoder.decode(output.stdout),
    err: decoder.decode(output.stderr),
  };
}

Deno.test("cliente --host with a name that does not resolve says so, not that a connection closed", async () => {
  const run = await cliente("--host", "no-existe.invalid", "ping");
  assert.equal(run.code, 1);
  assert.match(
    run.err,
    /^ERROR: CONNECTION_CLOSED: No se puede resolver el nombre «no-existe\.invalid»/m,
  );
  assert.match(run.err, /--host/);
  assert.doesNotMatch(run.err, /se cerró|sigue en marcha|deno task servidor/);
});

Deno.test("cliente says the connection was refused, with host and port, in every command", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(probe.addr.port);
  probe.close();
  for (const command of [["ping"], ["historial"], ["workers"], ["simular", "--num-tareas", "1"]]) {
    const run = await cliente("--host", "127.0.0.1", "--port", port, ...command);
    assert.equal(run.code, 1, command.join(" "));
    assert.match(
      run.err,
      new RegExp(`^ERROR: CONNECTION_CLOSED: Conexión rechazada en 127\\.0\\.0\\.1:${port}`, "m"),
      command.join(" "),
    );
  }
});

Deno.test({
  name:
    "Ctrl-C during cliente simular prints the partial summary of the tasks ended so far and exits 130",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("sigint");
    await using server = await startServer(queues);
    await using _worker = await startWorker("worker1", queues, ["--quiet"]);
    // setsid: the `deno task` process leads its own process group, as a terminal's foreground job does.
    const child = new Deno.Command("setsid", {
      args: [
        Deno.execPath(),
        "task",
        "-q",
        "cliente",
        "--host",
        "127.0.0.1",
        "--port",
        String(server.port),
        "simular",
        "--clientes",
        "2",
        "--num-tareas",
        "5000",
        "--tareas-tipos",
        "esperar",
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    let out = "";
    const decoder = new TextDecoder();
    const reader = child.stdout.getReader();
    try {
      while (!/Progreso: 10 %/.test(out)) {
        const { value, done } = await reader.read();
        if (done) break;
        out += decoder.decode(value, { stream: true });
      }
      Deno.kill(-child.pid, "SIGINT");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        out += decoder.decode(value, { stream: true });
      }
    } finally {
      reader.releaseLock();
    }
    const status = await child.status;
    const err = await stderr;
    assert.equal(status.code, 130, out + err);
    assert.match(err, /Interrumpida \(Ctrl-C\)/);
    assert.match(out, /Resumen parcial de la simulación/);
    const done = out.match(/tareas: +(\d+) de 5000 terminadas/);
    assert.ok(done !== null, out);
    assert.ok(Number(done[1]) >= 500 && Number(done[1]) < 5000, out);
    assert.match(out, /Por tipo de tarea\n[^]*\n {2}esperar +\d+/);
    assert.doesNotMatch(out, /Progreso: 100 %/);
  },
});
