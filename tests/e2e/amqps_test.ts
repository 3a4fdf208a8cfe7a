/**
 * End to end: the server and a worker reach RabbitMQ over TLS (`amqps://` and `--amqp-ca`), through a
 * TLS-terminating proxy the test runs in front of the local broker with a CA made for the run.
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client/task_client.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { RoleProcess, startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { opensslAvailable, TestCa } from "../_helpers/test_ca.ts";
import { TlsProxy } from "../_helpers/tls_proxy.ts";

const rabbit = await needsRabbit();
if (!rabbit.ignore && !(await opensslAvailable())) {
  throw new Error(
    "The TLS tests need the openssl CLI to make their certificates (.ci/run installs it)",
  );
}

/** The broker's plain address, which the proxy forwards to. */
function brokerAddress(): { hostname: string; port: number } {
  const url = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
  return { hostname: url.hostname, port: Number(url.port || 5672) };
}

/** The broker URL through the proxy: same credentials and vhost, `amqps://localhost:<port>`. */
function amqpsUrl(port: number): string {
  const url = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
  url.hostname = "localhost";
  url.port = String(port);
  return url.href.replace(/^http:/, "amqps:").replace(/\/$/, "");
}

async function startProxy(ca: TestCa): Promise<TlsProxy> {
  const cert = await ca.server("rabbitmq");
  return await TlsProxy.start({
    cert: await Deno.readTextFile(cert.cert),
    key: await Deno.readTextFile(cert.key),
  }, brokerAddress());
}

Deno.test({
  name: "server and worker talk to RabbitMQ over amqps:// with --amqp-ca, and a task round-trips",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    await using proxy = await startProxy(ca);
    const broker = ["--amqp-url", amqpsUrl(proxy.port), "--amqp-ca", ca.caCert];
    await using queues = uniqueQueues("amqps");
    await using server = await startServer(queues, broker);
    await using _worker = await startWorker("w-amqps", queues, broker);
    assert.ok(proxy.secureConnections >= 2, "both processes connected through the TLS proxy");
    await using client = new TaskClient({ port: server.port });
    const output = await client.run("text", { text: "por amqps" });
    assert.equal(output.words, 2);
  },
});

Deno.test({
  name:
    "a server given the wrong CA for amqps:// exits saying the broker's certificate is not trusted",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    await using otherCa = await TestCa.create("otra-ca");
    await using proxy = await startProxy(ca);
    await using queues = uniqueQueues("amqps-ca");
    await using server = new RoleProcess("server.ts", [
      "--port",
      "0",
      "--sin-http",
      "--store",
      "memory",
      "--task-queue",
      queues.taskQueue,
      "--result-queue",
      queues.resultQueue,
      "--amqp-url",
      amqpsUrl(proxy.port),
      "--amqp-ca",
      otherCa.caCert,
    ]);
    const status = await server.status;
    assert.equal(status.code, 1, server.lines.join("\n"));
    const said = server.lines.join("\n");
    assert.match(said, /No se puede conectar a RabbitMQ/);
    assert.match(said, /no es de una CA de confianza.*--amqp-ca/);
    assert.doesNotMatch(said, /guest:guest/, "the URL's password is not printed");
  },
});
