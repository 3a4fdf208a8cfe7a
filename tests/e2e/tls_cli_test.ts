/**
 * End to end: TLS from the command line. `deno task servidor --tls-cert … --tls-key …` (through the
 * launcher, which grants read access to those files only) and `deno task cliente --tls --ca …`,
 * `--cert`/`--key` under mutual TLS, `simular` over TLS, and the Spanish error for a wrong CA.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { needsRabbit } from "../_helpers/services.ts";
import { RoleProcess, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { opensslAvailable, TestCa } from "../_helpers/test_ca.ts";

const rabbit = await needsRabbit();
if (!rabbit.ignore && !(await opensslAvailable())) {
  throw new Error(
    "The TLS tests need the openssl CLI to make their certificates (.ci/run installs it)",
  );
}
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `deno task cliente` with the given arguments and environment. */
async function cliente(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cliente", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** `deno task servidor` over TLS with the certificate files of `ca`, outside the repository. */
async function startTlsServerTask(
  queues: { taskQueue: string; resultQueue: string },
  args: string[],
  env: Record<string, string> = {},
): Promise<RoleProcess & { port: number }> {
  const proc = new RoleProcess(
    "servidor",
    [
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--sin-http",
      "--store",
      "memory",
      "--task-queue",
      queues.taskQueue,
      "--result-queue",
      queues.resultQueue,
      ...args,
    ],
    env,
    { denoTask: true },
  );
  try {
    const match = await proc.waitFor(/Escuchando en 127\.0\.0\.1:(\d+)$/, 30_000);
    return Object.assign(proc, { port: Number(match[1]) });
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

Deno.test({
  name:
    "deno task servidor reads its TLS files and deno task cliente --tls --ca sends a task over TLS",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-cli");
    // The key comes from the environment: the launcher grants it as well as the flag's file.
    await using server = await startTlsServerTask(queues, ["--tls-cert", cert.cert], {
      COLMENA_TLS_KEY: cert.key,
    });
    await using _worker = await startWorker("w-tls-cli", queues, ["--quiet"]);
    const port = String(server.port);

    const sent = await cliente([
      "--port",
      port,
      "--tls",
      "--ca",
      ca.caCert,
      "enviar",
      "texto",
      "hola por tls",
      "--json",
    ]);
    assert.equal(sent.code, 0, sent.stderr);
    const result = JSON.parse(sent.stdout.trim().split("\n").at(-1)!);
    assert.equal(result.status, "succeeded");
    assert.equal(result.output.words, 3);

    const simulated = await cliente(
      ["--port", port, "simular", "--clientes", "2", "--num-tareas", "6", "--json"],
      { COLMENA_TLS: "true", COLMENA_CA: ca.caCert },
    );
    assert.equal(simulated.code, 0, simulated.stderr);
    const summary = JSON.parse(simulated.stdout.trim().split("\n").at(-1)!);
    assert.equal(summary.ok, 6, simulated.stdout);
  },
});

Deno.test({
  name: "deno task cliente with another CA fails with TLS_FAILED saying to use --ca",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    await using otherCa = await TestCa.create("otra-ca");
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-cli-ca");
    await using server = await startTlsServerTask(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
    ]);
    const out = await cliente(["--port", String(server.port), "--ca", otherCa.caCert, "ping"]);
    assert.notEqual(out.code, 0);
    assert.match(
      out.stderr,
      /TLS_FAILED: El certificado del servidor .* no está firmado por una CA de confianza/,
    );
    assert.match(out.stderr, /--ca/);
  },
});

Deno.test({
  name: "under mutual TLS deno task cliente presents --cert/--key; without them it is told to",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    const bea = await ca.client("bea");
    await using queues = uniqueQueues("mtls-cli");
    await using server = await startTlsServerTask(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
      "--tls-ca-clientes",
      ca.caCert,
    ]);
    const port = String(server.port);
    const ok = await cliente(["--port", port, "--ca", ca.caCert, "ping"], {
      COLMENA_CERT: bea.cert,
      COLMENA_KEY: bea.key,
    });
    assert.equal(ok.code, 0, ok.stderr);
    const refused = await cliente(["--port", port, "--ca", ca.caCert, "ping"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /TLS_FAILED: .*exige un certificado de cliente.*--cert y --key/);
  },
});
