// deno-lint-ignore-file no-console
// A command-line measuring tool: its progress (stderr) and its report (stdout) are its whole interface.
/**
 * `deno task bench:escalado`: throughput with one and with two servers behind HAProxy (`deploy/haproxy.cfg`),
 * sharing one RabbitMQ and one PostgreSQL, with the same two workers, in interleaved rounds of one run; then
 * the failover time when one of two servers is killed with SIGKILL under load (from the kill until every
 * client of the dead server has reconnected through HAProxy, and until every task has resolved).
 *
 * It reuses the processes and balancer helpers of the tests (`tests/_helpers/`): real `server.ts`,
 * `worker.ts` and HAProxy from Debian's packages. Everything it starts is stopped, and its queues and
 * PostgreSQL schemas are removed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { TaskClient } from "../client.ts";
import { wantsHelp } from "../shared/help.ts";
import { startHaproxy, uniqueSchema } from "../tests/_helpers/balancer.ts";
import {
  type ServerProcess,
  startServer,
  startWorker,
  uniqueQueues,
} from "../tests/_helpers/processes.ts";
import { DATABASE_URL } from "../tests/_helpers/services.ts";

const USAGE = `Uso: deno task -q bench:escalado [opciones]
  --tareas N      tareas por ronda                     [4000]
  --clientes N    clientes a través de HAProxy         [8]
  --en-vuelo N    tareas en vuelo por cliente          [100]
  --rondas N      rondas de cada lado (alternadas)     [2]
Necesita RabbitMQ, PostgreSQL (DATABASE_URL) y haproxy.`;

if (wantsHelp(Deno.args)) {
  console.log(USAGE);
  Deno.exit(0);
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tareas: { type: "string", default: "4000" },
    clientes: { type: "string", default: "8" },
    "en-vuelo": { type: "string", default: "100" },
    rondas: { type: "string", default: "2" },
  },
});
const TASKS = Number(values.tareas);
const CLIENTS = Number(values.clientes);
const WINDOW = Number(values["en-vuelo"]);
const ROUNDS = Number(values.rondas);

/** Two servers (or one, listed twice to HAProxy) on fresh queues and schema, two workers, HAProxy. */
async function topology(stack: AsyncDisposableStack, servers: 1 | 2) {
  const queues = stack.use(uniqueQueues(`esc${servers}`));
  const schema = stack.use(uniqueSchema());
  const store = ["--store", "postgres", "--database-url", DATABASE_URL, "--db-schema", schema.name];
  const quiet = { COLMENA_QUIET: "1" };
  const list: ServerProcess[] = [];
  for (let i = 1; i <= servers; i++) {
    list.push(stack.use(await startServer(queues, [...store, "--server-id", `esc-${i}`], quiet)));
  }
  stack.use(await startWorker("w1", queues, ["--concurrency", "200", "--quiet"]));
  stack.use(await startWorker("w2", queues, ["--concurrency", "200", "--quiet"]));
  const [a, b = a] = list as [ServerProcess, ServerProcess?];
  const haproxy = stack.use(
    await startHaproxy([
      { port: a.port, httpPort: a.httpPort! },
      { port: b!.port, httpPort: b!.httpPort! },
    ]),
  );
  return { servers: list, port: haproxy.port };
}

/** Runs `total` echo tasks from `clients` TaskClients through `port`, `window` in flight each. */
async function load(
  clients: TaskClient[],
  total: number,
  onDone?: (done: number) => void,
): Promise<number> {
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(clients.map(async (client) => {
    const lane = async () => {
      while (next < total) {
        next++;
        await client.run("echo", { message: next });
        done++;
        onDone?.(done);
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, lane));
  }));
  return total / ((performance.now() - t0) / 1000);
}

function connectClients(stack: AsyncDisposableStack, port: number): Promise<TaskClient[]> {
  const clients = Array.from({ length: CLIENTS }, (_, k) => {
    const client = new TaskClient({
      host: "127.0.0.1",
      port,
      name: `escala-${k}`,
      reconnectForMs: 60_000,
      requestTimeoutMs: 120_000,
    });
    stack.defer(() => client.close());
    return client;
  });
  return Promise.all(clients.map((c) => c.connect())).then(() => clients);
}

async function round(servers: 1 | 2): Promise<number> {
  await using stack = new AsyncDisposableStack();
  const { port } = await topology(stack, servers);
  const clients = await connectClients(stack, port);
  await load(clients, Math.min(500, TASKS)); // warm-up
  return await load(clients, TASKS);
}

async function failover(): Promise<{ reconnectMs: number; totalMs: number; onDead: number }> {
  await using stack = new AsyncDisposableStack();
  const { servers, port } = await topology(stack, 2);
  const clients = await connectClients(stack, port);
  const metrics = await (await fetch(`http://127.0.0.1:${servers[0]!.httpPort}/metrics`)).text();
  const onDead = Number(
    metrics.split("\n").find((l) => l.startsWith("colmena_connections_total "))?.split(" ")[1],
  );
  let killedAt = 0;
  let reconnectMs = -1;
  const poll = setInterval(() => {
    if (killedAt > 0 && reconnectMs < 0) {
      const reconnected = clients.reduce((n, c) => n + c.reconnects, 0);
      if (reconnected >= onDead) reconnectMs = Date.now() - killedAt;
    }
  }, 5);
  try {
    await load(clients, TASKS, (done) => {
      if (killedAt === 0 && done >= TASKS / 3) {
        killedAt = Date.now();
        servers[0]!.kill("SIGKILL");
      }
    });
  } finally {
    clearInterval(poll);
  }
  return { reconnectMs, totalMs: Date.now() - killedAt, onDead };
}

const results: Record<1 | 2, number[]> = { 1: [], 2: [] };
for (let r = 1; r <= ROUNDS; r++) {
  for (const n of [1, 2] as const) {
    console.error(`Ronda ${r}: ${n} servidor${n === 1 ? "" : "es"}…`);
    results[n].push(await round(n));
  }
}
console.error("Caída de un servidor bajo carga…");
const fo = await failover();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number) => Math.round(x).toLocaleString("es-ES");
console.log(`| servidores | tareas/s (rondas) | mediana |`);
console.log(`| ---------- | ----------------- | ------: |`);
for (const n of [1, 2] as const) {
  console.log(`| ${n} | ${results[n].map(fmt).join(" · ")} | ${fmt(median(results[n]))} |`);
}
console.log(
  `\n2 servidores / 1: ${(median(results[2]) / median(results[1])).toFixed(2)} · ` +
    `${TASKS} tareas por ronda, ${CLIENTS} clientes × ${WINDOW} en vuelo, 2 workers, PostgreSQL.`,
);
console.log(
  `Caída (kill -9 de 1 de 2 servidores a un tercio de ${TASKS} tareas): ${fo.onDead} clientes ` +
    `reconectados a través de HAProxy en ${fo.reconnectMs} ms; todas las tareas resueltas ` +
    `${fo.totalMs} ms después de la caída.`,
);
