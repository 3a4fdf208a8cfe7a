/**
 * End to end, through `deno task -q cliente`: `enviar` says at once that its task was accepted (on stderr, so
 * `--json` keeps stdout to one line), reports upload progress for `--archivo`, checks `--salida` before
 * sending, reaches the dead-letter queue with `--intentos` and `--timeout-ms`, and on Ctrl-C while waiting
 * says the task stays queued and how to follow it, with the `--host`/`--port` in use.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";

const rabbit = await needsRabbit();
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const hasSetsid = await new Deno.Command("setsid", { args: ["--version"], stdout: "null" })
  .output().then((o) => o.success, () => false);

function cliArgs(port: number, args: string[]): string[] {
  return ["task", "-q", "cliente", "--host", "127.0.0.1", "--port", String(port), ...args];
}

async function cliente(port: number, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: cliArgs(port, args),
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
  name:
    "enviar says Aceptada on stderr, keeps --json to one stdout line, and shows upload progress",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("send");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using _w = await startWorker("w-send", queues, ["--quiet"]);

    const sent = await cliente(server.port, "enviar", "texto", "hola mundo", "--json");
    assert.equal(sent.code, 0, sent.stderr);
    const lines = sent.stdout.trim().split("\n");
    assert.equal(lines.length, 1, sent.stdout);
    const result = JSON.parse(lines[0]!);
    assert.equal(result.status, "succeeded");
    assert.match(sent.stderr, new RegExp(`^Aceptada: ${result.taskId} \\(en cola\\)$`, "m"));

    const dir = await Deno.makeTempDir({ prefix: "colmena-send-" });
    try {
      const book = join(dir, "libro.txt");
      await Deno.writeTextFile(book, "palabra ".repeat(300_000)); // 2,3 MiB: several upload pieces
      const up = await cliente(server.port, "enviar", "texto", "--archivo", book, "--json");
      assert.equal(up.code, 0, up.stderr);
      assert.equal(up.stdout.trim().split("\n").length, 1);
      assert.match(up.stderr, /^Subiendo: .* de 2[.,]3 MiB \(\d+ %\)$/m);
      assert.match(up.stderr, /^Subiendo: 2[.,]3 MiB de 2[.,]3 MiB \(100 %\)$/m);
      assert.match(up.stderr, /^Aceptada: /m);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("enviar checks --salida before sending: its folder must exist and it must not be a folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-salida-" });
  try {
    // Port 9 has no colmena server: the check comes before any connection.
    const folder = await cliente(9, "enviar", "texto", "hola", "--salida", dir);
    assert.equal(folder.code, 2);
    assert.match(folder.stderr, /--salida «.*» es una carpeta/);
    const missing = await cliente(
      9,
      "enviar",
      "texto",
      "hola",
      "--salida",
      join(dir, "no", "r.json"),
    );
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no existe la carpeta «.*no»/);
    assert.doesNotMatch(folder.stderr + missing.stderr, /No se puede conectar/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "enviar --intentos 1 --timeout-ms sends a task that times out straight to the dead-letter queue",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("dlqcli");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using _w = await startWorker("w-dlq", queues, ["--quiet"]);
    const sent = await cliente(
      server.port,
      "enviar",
      "esperar",
      "3000",
      "--intentos",
      "1",
      "--timeout-ms",
      "100",
      "--json",
    );
    assert.equal(sent.code, 1, sent.stderr);
    const result = JSON.parse(sent.stdout.trim());
    assert.equal(result.status, "failed");
    assert.equal(result.error.code, "TIMEOUT");
    const dlq = await cliente(server.port, "dlq", "listar", "--json");
    assert.equal(dlq.code, 0, dlq.stderr);
    assert.match(dlq.stdout, new RegExp(result.taskId));
  },
});

Deno.test({
  name:
    "Ctrl-C while enviar waits says the task stays queued and how to follow it, with --host/--port",
  ...(hasSetsid ? rabbit : { ignore: true }),
  async fn() {
    await using queues = uniqueQueues("sendint");
    await using server = await startServer(queues, ["--store", "memory"]);
    // No worker: the task stays queued while enviar waits.
    const child = new Deno.Command("setsid", {
      args: [Deno.execPath(), ...cliArgs(server.port, ["enviar", "esperar", "10"])],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = new Response(child.stdout).text();
    let stderr = "";
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    while (!/Aceptada: \S+/.test(stderr)) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += value;
    }
    const taskId = stderr.match(/Aceptada: (\S+) \(en cola\)/)?.[1];
    assert.ok(taskId, stderr);
    Deno.kill(-child.pid, "SIGINT");
    for (let r = await reader.read(); !r.done; r = await reader.read()) stderr += r.value;
    const status = await child.status;
    await stdout;
    assert.equal(status.code, 130, stderr);
    assert.match(stderr, new RegExp(`la tarea ${taskId} sigue en cola`));
    assert.match(
      stderr,
      new RegExp(
        `Sígala con: deno task -q cliente --host 127\\.0\\.0\\.1 --port ${server.port} estado ${taskId}`,
      ),
    );
    const state = await cliente(server.port, "estado", taskId, "--json");
    assert.equal(JSON.parse(state.stdout.trim()).status, "queued");
  },
});
