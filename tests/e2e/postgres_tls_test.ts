/**
 * End to end: the server keeps its task records in PostgreSQL over TLS (`sslmode` in the URL and
 * `--database-ca`), against a cluster the test makes with TLS on and plaintext refused.
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client/task_client.ts";
import { needsRabbit } from "../_helpers/services.ts";
import { RoleProcess, startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { opensslAvailable, TestCa } from "../_helpers/test_ca.ts";
import { tlsClusterUnavailable, TlsPostgresCluster } from "../_helpers/pg_cluster.ts";

const rabbit = await needsRabbit();
const unavailable = rabbit.ignore ? undefined : await tlsClusterUnavailable() ??
  (await opensslAvailable() ? undefined : "no openssl CLI to make the certificates");
if (unavailable !== undefined) {
  if (Deno.env.get("CI") === "true") {
    throw new Error(`The PostgreSQL TLS tests cannot run and CI=true: ${unavailable}`);
  }
  // deno-lint-ignore no-console
  console.warn(`[omitido] No se puede crear un clúster PostgreSQL con TLS: ${unavailable}`);
}
const cluster = { ignore: rabbit.ignore || unavailable !== undefined };

/** Runs a server that should fail at start-up; resolves with its exit code and what it printed. */
async function failingServer(args: string[]): Promise<{ code: number; said: string }> {
  await using queues = uniqueQueues("pg-tls-fail");
  await using server = new RoleProcess("server.ts", [
    "--port",
    "0",
    "--sin-http",
    "--task-queue",
    queues.taskQueue,
    "--result-queue",
    queues.resultQueue,
    ...args,
  ]);
  const status = await server.status;
  return { code: status.code, said: server.lines.join("\n") };
}

Deno.test({
  name:
    "the server records tasks in PostgreSQL over TLS with sslmode=verify-full and --database-ca",
  ...cluster,
  async fn() {
    await using ca = await TestCa.create();
    await using pg = await TlsPostgresCluster.start(await ca.server("postgres"));
    const schema = `tls_${crypto.randomUUID().slice(0, 8)}`;
    await using queues = uniqueQueues("pg-tls");
    await using server = await startServer(queues, [
      "--database-url",
      pg.url("?sslmode=verify-full"),
      "--database-ca",
      ca.caCert,
      "--db-schema",
      schema,
    ]);
    await using _worker = await startWorker("w-pg-tls", queues);
    assert.ok(server.lines.some((l) => l.includes("PostgreSQL")), server.lines.join("\n"));
    await using client = new TaskClient({ port: server.port });
    const taskId = await client.submit("numbers", { numbers: [4, 5] });
    const result = await client.result(taskId);
    assert.equal(result.status, "succeeded");
    const view = await client.status(taskId);
    assert.equal(view.status, "succeeded", "the record was read back from PostgreSQL");
  },
});

Deno.test({
  name:
    "the TLS-only cluster refuses a server without TLS, and one with the wrong CA fails clearly",
  ...cluster,
  async fn() {
    await using ca = await TestCa.create();
    await using otherCa = await TestCa.create("otra-ca");
    await using pg = await TlsPostgresCluster.start(await ca.server("postgres"));
    const plain = await failingServer(["--database-url", pg.url("?sslmode=disable")]);
    assert.equal(plain.code, 1, plain.said);
    assert.match(plain.said, /no encryption/, "the cluster takes TLS connections only");

    const wrongCa = await failingServer([
      "--database-url",
      pg.url("?sslmode=verify-full"),
      "--database-ca",
      otherCa.caCert,
    ]);
    assert.equal(wrongCa.code, 1, wrongCa.said);
    assert.match(wrongCa.said, /no es de una CA de confianza.*--database-ca/);
  },
});
