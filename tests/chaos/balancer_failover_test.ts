/**
 * Chaos: two servers sharing one RabbitMQ and one PostgreSQL behind HAProxy (`deploy/haproxy.cfg`).
 *
 * - One server killed with SIGKILL mid-run: its `TaskClient`s reconnect through HAProxy to the other one,
 *   resend what had no reply (same idempotency keys) and watch what they await; every task resolves, once,
 *   and every record is final (the dead server's reply queue strands nothing: results are recorded by
 *   whichever server consumes them, and its queue only held pushes for connections that are gone).
 * - One server stopped with SIGTERM: `/readyz` fails first, HAProxy takes it out of rotation while it still
 *   serves, then it ends its connections; the clients go on through the other server and none sees an error.
 */
import assert from "node:assert/strict";
import pg from "pg";
import { TaskClient } from "../../client.ts";
import { DATABASE_URL, needsPostgres, needsRabbit } from "../_helpers/services.ts";
import {
  type ServerProcess,
  startServer,
  startWorker,
  uniqueQueues,
} from "../_helpers/processes.ts";
import { needsBinary, startHaproxy, uniqueSchema } from "../_helpers/balancer.ts";
import { report, scaled, waitUntil, withDeadline } from "../_helpers/chaos.ts";

const ignore = (await needsRabbit()).ignore || (await needsPostgres()).ignore ||
  (await needsBinary("haproxy")).ignore;

/** The statuses of every record in `schema`, counted. */
async function recordStatuses(schema: string): Promise<Map<string, number>> {
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  try {
    const { rows } = await db.query<{ status: string; n: string }>(
      `SELECT status, count(*) AS n FROM ${schema}.tasks GROUP BY status`,
    );
    return new Map(rows.map((r) => [r.status, Number(r.n)]));
  } finally {
    await db.end();
  }
}

/** Two servers (`extraArgs` each), two workers and HAProxy, on fresh queues and a fresh schema. */
async function topology(stack: AsyncDisposableStack, label: string, extraArgs: string[] = []) {
  const queues = stack.use(uniqueQueues(label));
  const schema = stack.use(uniqueSchema());
  const store = ["--store", "postgres", "--database-url", DATABASE_URL, "--db-schema", schema.name];
  const s1 = stack.use(
    await startServer(queues, [...store, "--server-id", `${label}-1`, ...extraArgs]),
  );
  const s2 = stack.use(
    await startServer(queues, [...store, "--server-id", `${label}-2`, ...extraArgs]),
  );
  stack.use(await startWorker("w1", queues, ["--concurrency", "20"]));
  stack.use(await startWorker("w2", queues, ["--concurrency", "20"]));
  const haproxy = stack.use(
    await startHaproxy([
      { port: s1.port, httpPort: s1.httpPort! },
      { port: s2.port, httpPort: s2.httpPort! },
    ]),
  );
  return { s1, s2, schema: schema.name, haproxy };
}

/** Clients through `port`, each result counted by task id. */
function clientsOn(
  stack: AsyncDisposableStack,
  port: number,
  n: number,
  seen: Map<string, number>,
) {
  return Array.from({ length: n }, (_, k) => {
    const client = new TaskClient({
      host: "127.0.0.1",
      port,
      name: `failover-${k}`,
      reconnectForMs: 30_000,
      requestTimeoutMs: 90_000,
    });
    client.onResult((r) => seen.set(r.taskId, (seen.get(r.taskId) ?? 0) + 1));
    stack.defer(() => client.close());
    return client;
  });
}

/** Connections the server took, from its `/metrics`. */
async function connectionsTaken(server: ServerProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("colmena_connections_total "));
  return Number(line?.split(" ")[1]);
}

Deno.test({
  name:
    "kill -9 of one of two servers behind HAProxy: its clients reconnect to the other and every task resolves once",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const started = Date.now();
    await using stack = new AsyncDisposableStack();
    const { s1, schema, haproxy } = await topology(stack, "fokill");
    const clientCount = 10;
    const perClient = scaled(40);
    const total = clientCount * perClient;
    const seen = new Map<string, number>();
    const clients = clientsOn(stack, haproxy.port, clientCount, seen);
    await Promise.all(clients.map((c) => c.connect()));
    const onFirst = await connectionsTaken(s1);
    assert.ok(onFirst > 0 && onFirst < clientCount, `clients on the first server: ${onFirst}`);

    const work = clients.map(async (client) => {
      const ids = await Promise.all(
        Array.from(
          { length: perClient },
          (_, i) => client.submit("sleep", { ms: 100 + i % 4 * 50 }),
        ),
      );
      const results = await Promise.all(ids.map((id) => client.result(id)));
      return { ids, results };
    });
    const settled = Promise.allSettled(work);
    await waitUntil(() => seen.size >= total / 4, "a quarter of the results");
    const killedAt = Date.now();
    s1.kill("SIGKILL");
    assert.equal((await s1.status).signal, "SIGKILL");
    await waitUntil(
      () => clients.reduce((n, c) => n + c.reconnects, 0) >= onFirst,
      "the dead server's clients to reconnect",
    );
    const failoverMs = Date.now() - killedAt;

    const outcomes = await withDeadline(settled, "every task to resolve", 120_000);
    const ids: string[] = [];
    for (const outcome of outcomes) {
      if (outcome.status === "rejected") throw outcome.reason;
      ids.push(...outcome.value.ids);
      for (const r of outcome.value.results) assert.equal(r.status, "succeeded", JSON.stringify(r));
    }
    assert.equal(new Set(ids).size, total, "one task per submit, resends included");
    const duplicated = [...seen.values()].reduce((n, c) => n + Math.max(0, c - 1), 0);
    const lost = ids.filter((id) => !seen.has(id)).length;
    const statuses = await recordStatuses(schema);
    await report({
      escenario: "kill -9 de 1 de 2 servidores tras HAProxy",
      tareas: total,
      fallos: "kill -9 de un servidor con un cuarto de los resultados entregados",
      resultados: seen.size,
      duplicadosEntregados: duplicated,
      perdidas: lost,
      ms: Date.now() - started,
      notas: `${onFirst} clientes reconectados en ${failoverMs} ms`,
    });
    assert.equal(lost, 0, "every task resolved");
    assert.equal(duplicated, 0, "no client saw a result twice");
    assert.deepEqual([...statuses], [["succeeded", total]], "one final record per task, no more");
  },
});

Deno.test({
  name:
    "SIGTERM of one of two servers behind HAProxy: readiness fails first, HAProxy drains it, no client sees an error",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const started = Date.now();
    await using stack = new AsyncDisposableStack();
    const { s1, s2, schema, haproxy } = await topology(stack, "foterm", [
      "--drain-delay-ms",
      "3000",
    ]);
    const clientCount = 10;
    const seen = new Map<string, number>();
    const clients = clientsOn(stack, haproxy.port, clientCount, seen);
    await Promise.all(clients.map((c) => c.connect()));
    const onFirst = await connectionsTaken(s1);
    assert.ok(onFirst > 0, "some clients on the server that stops");

    // Each client keeps a few tasks going until told to stop; any rejection fails the test.
    let stop = false;
    let done = 0;
    const work = clients.map(async (client) => {
      const lane = async () => {
        while (!stop) {
          const out = await client.run("sleep", { ms: 20 });
          assert.ok(out.sleptMs >= 19);
          done++;
        }
      };
      await Promise.all([lane(), lane(), lane()]);
    });
    const settled = Promise.allSettled(work);
    await waitUntil(() => done >= 100, "100 tasks done");

    const termAt = Date.now();
    s1.kill("SIGTERM");
    await waitUntil(
      async () => (await haproxy.states()).get("servidor1")?.startsWith("DOWN") ?? false,
      "HAProxy to mark the stopping server DOWN",
    );
    const downMs = Date.now() - termAt;
    // Taken out of rotation while it still served: it had not yet stopped taking connections.
    const stillServing = !s1.lines.some((l) => l.includes("Deja de aceptar conexiones"));
    const status = await s1.status;
    assert.equal(status.code, 0, s1.lines.join("\n"));
    const atExit = done;
    await waitUntil(() => done >= atExit + 100, "100 more tasks through the other server");
    stop = true;
    const outcomes = await withDeadline(settled, "the clients to finish", 60_000);
    for (const outcome of outcomes) if (outcome.status === "rejected") throw outcome.reason;
    const reconnects = clients.reduce((n, c) => n + c.reconnects, 0);
    const statuses = await recordStatuses(schema);
    await report({
      escenario: "SIGTERM de 1 de 2 servidores tras HAProxy",
      tareas: done,
      fallos: "SIGTERM de un servidor con --drain-delay-ms 3000",
      resultados: seen.size,
      duplicadosEntregados: [...seen.values()].filter((n) => n > 1).length,
      perdidas: done - seen.size,
      ms: Date.now() - started,
      notas: `HAProxy lo marcó DOWN a los ${downMs} ms; ${reconnects} reconexiones, 0 errores`,
    });
    assert.ok(stillServing, "HAProxy marked it DOWN before it stopped");
    assert.ok(reconnects >= onFirst, "its clients moved to the other server");
    assert.ok(await connectionsTaken(s2) > 0);
    assert.equal(seen.size, done);
    assert.equal(statuses.get("succeeded"), done, JSON.stringify([...statuses]));
  },
});
