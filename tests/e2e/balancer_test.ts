/**
 * End to end: two servers sharing one RabbitMQ and one PostgreSQL behind the balancers colmena ships
 * (`deploy/haproxy.cfg`, `deploy/nginx.conf`), two workers, many clients connected through the balancer.
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import { DATABASE_URL, needsPostgres, needsRabbit } from "../_helpers/services.ts";
import {
  type ServerProcess,
  startServer,
  startWorker,
  uniqueQueues,
} from "../_helpers/processes.ts";
import {
  type Backend,
  needsBinary,
  startHaproxy,
  startNginx,
  uniqueSchema,
} from "../_helpers/balancer.ts";

const services = (await needsRabbit()).ignore || (await needsPostgres()).ignore;
const haproxy = await needsBinary("haproxy");
const nginx = await needsBinary("nginx");

/** Reads one counter of a server's `/metrics`. */
async function metric(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1] ?? NaN);
}

/**
 * 20 clients through `port`, 100 echo tasks each: every result is the task's own, arrives once, and both
 * servers carried clients.
 */
async function twentyClients(port: number, servers: readonly ServerProcess[]): Promise<void> {
  const clients = 20;
  const perClient = 100;
  const seen = new Map<string, number>();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    await using client = new TaskClient({ host: "127.0.0.1", port, name: `bal-${c}` });
    client.onResult((r) => seen.set(r.taskId, (seen.get(r.taskId) ?? 0) + 1));
    await client.connect();
    const outputs = await Promise.all(
      Array.from({ length: perClient }, (_, i) => client.run("echo", { message: `${c}/${i}` })),
    );
    assert.deepEqual(
      outputs.map((o) => o.message),
      Array.from({ length: perClient }, (_, i) => `${c}/${i}`),
    );
  }));
  assert.equal(seen.size, clients * perClient);
  assert.ok([...seen.values()].every((n) => n === 1), "a result delivered more than once");
  const carried = await Promise.all(servers.map((s) => metric(s, "colmena_connections_total")));
  assert.ok(carried.every((n) => n > 0), `connections per server: ${carried.join(", ")}`);
  // Nginx counts its own readiness probe among them.
  assert.ok(carried.reduce((a, b) => a + b) >= clients);
}

async function twoServers(
  kind: "haproxy" | "nginx",
): Promise<void> {
  await using queues = uniqueQueues(`bal${kind}`);
  await using schema = uniqueSchema();
  const store = ["--store", "postgres", "--database-url", DATABASE_URL, "--db-schema", schema.name];
  await using stack = new AsyncDisposableStack();
  const s1 = stack.use(await startServer(queues, [...store, "--server-id", "bal-1"]));
  const s2 = stack.use(await startServer(queues, [...store, "--server-id", "bal-2"]));
  stack.use(await startWorker("w1", queues, ["--concurrency", "50"]));
  stack.use(await startWorker("w2", queues, ["--concurrency", "50"]));
  const backends: [Backend, Backend] = [
    { port: s1.port, httpPort: s1.httpPort! },
    { port: s2.port, httpPort: s2.httpPort! },
  ];
  await using balancer = kind === "haproxy"
    ? await startHaproxy(backends)
    : await startNginx(backends);
  await twentyClients(balancer.port, [s1, s2]);
}

Deno.test({
  name:
    "Two servers behind HAProxy: 2,000 tasks from 20 clients, each result correct and delivered once",
  ignore: services || haproxy.ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => twoServers("haproxy"),
});

Deno.test({
  name: "The same through Nginx's stream proxy",
  ignore: services || nginx.ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => twoServers("nginx"),
});
