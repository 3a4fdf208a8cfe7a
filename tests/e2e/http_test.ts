/**
 * End to end: the server's HTTP listener. `/healthz` and `/readyz` with a real broker and store, `/readyz`
 * answering 503 when the broker is cut (through a TCP proxy) and at once on SIGTERM, `/metrics` counting tasks
 * run through a real worker, `--sin-http`, and a bad `--http`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { freePort } from "../_helpers/chaos.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";

const rabbit = await needsRabbit();

async function get(port: number | undefined, path: string, method = "GET") {
  assert.ok(port !== undefined, "the server printed no HTTP port");
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  const text = await response.text();
  return { status: response.status, type: response.headers.get("content-type") ?? "", text };
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test({
  name:
    "HTTP answers healthz, readyz, 404 and 405, and metrics count echo tasks run through a worker",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("http");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using _worker = await startWorker("w-http", queues, ["--quiet"]);

    assert.deepEqual(await get(server.httpPort, "/healthz"), {
      status: 200,
      type: "application/json; charset=utf-8",
      text: '{"estado":"vivo"}',
    });
    const ready = await get(server.httpPort, "/readyz");
    assert.equal(ready.status, 200);
    assert.deepEqual(JSON.parse(ready.text), { estado: "listo", broker: true, almacen: true });
    const missing = await get(server.httpPort, "/nada");
    assert.equal(missing.status, 404);
    assert.match(JSON.parse(missing.text).message, /No existe la ruta \/nada/);
    assert.equal((await get(server.httpPort, "/metrics", "POST")).status, 405);

    {
      await using client = new TaskClient({ host: "127.0.0.1", port: server.port, kind: "web" });
      for (let i = 0; i < 5; i++) await client.run("echo", { message: `hola ${i}` });
      await client.run("text", { text: "hola mundo" });
      const metrics = await get(server.httpPort, "/metrics");
      assert.equal(metrics.type, "text/plain; version=0.0.4; charset=utf-8");
      const lines = metrics.text.split("\n");
      for (
        const line of [
          'colmena_tasks_submitted_total{type="echo"} 5',
          'colmena_tasks_accepted_total{type="echo"} 5',
          'colmena_results_succeeded_total{type="echo"} 5',
          'colmena_results_succeeded_total{type="text"} 1',
          'colmena_task_latency_seconds_count{type="echo"} 5',
          'colmena_task_latency_seconds_bucket{type="echo",le="+Inf"} 5',
          'colmena_clients_connected{kind="web"} 1',
          "colmena_tasks_awaiting_result 0",
          "colmena_broker_connected 1",
        ]
      ) assert.ok(lines.includes(line), `${line} not in:\n${metrics.text}`);
      await waitUntil(
        "the worker is counted alive",
        async () =>
          (await get(server.httpPort, "/metrics")).text.includes("colmena_workers_alive 1"),
      );
    }
  },
});

Deno.test({
  name:
    "readyz answers 503 with broker false while the broker is cut, and 200 once it is back, one reconnect counted",
  ...rabbit,
  async fn() {
    const target = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
    await using proxy = new TcpProxy({
      hostname: target.hostname,
      port: Number(target.port || 5672),
    });
    proxy.restore();
    const viaProxy = new URL(AMQP_URL);
    viaProxy.hostname = "127.0.0.1";
    viaProxy.port = String(proxy.port);
    await using queues = uniqueQueues("httpcut");
    await using server = await startServer(queues, [
      "--store",
      "memory",
      "--amqp-url",
      viaProxy.href,
    ]);
    assert.equal((await get(server.httpPort, "/readyz")).status, 200);
    assert.match(
      (await get(server.httpPort, "/metrics")).text,
      /\ncolmena_broker_reconnects_total 0\n/,
    );
    await proxy.cut();
    let body = "";
    await waitUntil("readyz says 503", async () => {
      const ready = await get(server.httpPort, "/readyz");
      body = ready.text;
      return ready.status === 503;
    });
    assert.deepEqual(JSON.parse(body), { estado: "no listo", broker: false, almacen: true });
    assert.equal((await get(server.httpPort, "/healthz")).status, 200);
    proxy.restore();
    await waitUntil(
      "readyz says 200 again",
      async () => (await get(server.httpPort, "/readyz")).status === 200,
      30_000,
    );
    assert.match(
      (await get(server.httpPort, "/metrics")).text,
      /\ncolmena_broker_reconnects_total 1\n/,
    );
  },
});

Deno.test({
  name: "readyz answers 503 at once on SIGTERM while a task in flight keeps the drain going",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("httpdrain");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using _worker = await startWorker("w-drain", queues, ["--quiet"]);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port });
    const taskId = await client.submit("sleep", { ms: 2_000 });
    await waitUntil(
      "the task runs",
      async () => (await client.status(taskId)).status === "running",
    );
    server.kill("SIGTERM");
    let drained: { status: number; text: string } | undefined;
    await waitUntil("readyz says the server drains", async () => {
      const ready = await get(server.httpPort, "/readyz");
      if (ready.status === 200) return false;
      drained = ready;
      return true;
    }, 1_500);
    assert.equal(drained?.status, 503);
    assert.deepEqual(JSON.parse(drained!.text), { estado: "no listo", drenando: true });
    assert.equal((await get(server.httpPort, "/healthz")).status, 200);
    const result = await client.result(taskId);
    assert.equal(result.status, "succeeded");
  },
});

Deno.test({
  name: "--sin-http opens no HTTP port and prints no HTTP line",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("nohttp");
    const port = freePort();
    await using server = await startServer(queues, [
      "--store",
      "memory",
      "--http",
      `127.0.0.1:${port}`,
      "--sin-http",
    ]);
    assert.equal(server.httpPort, undefined);
    await assert.rejects(
      () => Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
    );
    assert.ok(!server.lines.some((l) => l.startsWith("HTTP en")), server.lines.join("\n"));
  },
});

Deno.test("a bad --http value is one Spanish sentence and exit code 2", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "server.ts",
      "--http",
      "sin-puerto",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  const text = new TextDecoder().decode(out.stderr);
  assert.match(
    text.split("\n")[0]!,
    /--http debe ser host:puerto, como localhost:8080 o 127\.0\.0\.1:0 \(puerto de 0 a 65535\), no «sin-puerto»/,
  );
});
