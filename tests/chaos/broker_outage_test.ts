/**
 * Chaos: RabbitMQ goes away in the middle of a stream of submits and comes back. Every submit is answered
 * (`accepted`, or `BROKER_UNAVAILABLE` while there is no broker), every accepted task gets exactly one result,
 * and nothing is left behind in the queues.
 *
 * The broker of this machine is shared, so by default it is taken away through a TCP proxy that sits between
 * it and the server and workers (a real loss of the broker for those processes). With
 * `COLMENA_CAOS_RABBIT_RESTART=1` (`deno task caos`) the local RabbitMQ itself is stopped and started again.
 */
import assert from "node:assert/strict";
import { queueDepth, typeQueuesDepth } from "../../shared/adapters/rabbitmq/topology.ts";
import { TASK_TYPES } from "../../shared/tasks.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";
import {
  acceptedOrRefused,
  extraResults,
  fetchRecords,
  report,
  resultCounts,
  scaled,
  sendSubmits,
  serverStopStats,
  type TaskSpec,
  tempDir,
  waitUntil,
} from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();

/** How a broker outage is caused and ended. */
interface Outage {
  readonly label: string;
  readonly amqpUrl: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
}

/** The mix of a stream: mostly short tasks, and a few long ones that are running when the broker goes. */
function specAt(i: number): TaskSpec {
  if (i % 50 === 7) return { type: "sleep", payload: { ms: 4_000 } };
  if (i % 3 === 0) return { type: "sleep", payload: { ms: 20 } };
  return { type: "echo", payload: { message: `tarea ${i}` } };
}

async function runOutage(outage: Outage, outageMs: number): Promise<void> {
  const started = Date.now();
  const total = scaled(600);
  const wave = 10;
  await using queues = uniqueQueues("outage");
  await using data = await tempDir();
  const amqp = ["--amqp-url", outage.amqpUrl];
  await using server = await startServer(queues, [
    ...amqp,
    "--data-dir",
    data.path,
    "--publish-retry-ms",
    "30000",
  ]);
  await using stack = new AsyncDisposableStack();
  const workers = [
    stack.use(await startWorker("w1", queues, [...amqp, "--concurrency", "20"])),
    stack.use(await startWorker("w2", queues, [...amqp, "--concurrency", "20"])),
  ];
  const client = stack.use(await RawClient.connect(server.port));

  // A steady stream of submits, in waves; the broker goes away a third of the way in.
  const requestIds: string[] = [];
  let outageDone: Promise<void> | undefined;
  for (let sent = 0; sent < total; sent += wave) {
    if (outageDone === undefined && sent >= total / 3) {
      await outage.cut();
      outageDone = new Promise<void>((resolve) => setTimeout(resolve, outageMs))
        .then(() => outage.restore());
    }
    const specs = Array.from({ length: Math.min(wave, total - sent) }, (_, k) => specAt(sent + k));
    requestIds.push(...await sendSubmits(client, `s${sent}-`, specs));
    await new Promise((resolve) => setTimeout(resolve, 15));
  }
  await outageDone;
  const { accepted, refused: unavailable } = await acceptedOrRefused(
    client,
    requestIds,
    "BROKER_UNAVAILABLE",
    60_000,
  );
  await waitUntil(
    () => accepted.every((taskId) => resultCounts(client.frames).has(taskId)),
    `a result for each of the ${accepted.length} accepted tasks`,
    90_000,
  );
  const records = await fetchRecords(server.port, accepted);
  for (const taskId of accepted) {
    assert.equal(records.get(taskId)?.status, "succeeded", `record of ${taskId}`);
  }

  // Nothing stays behind: copies that ran twice are consumed, and once the workers stop no task that one
  // of them held unacknowledged goes back to the queue.
  await waitUntil(
    async () => (await typeQueuesDepth(AMQP_URL, { ...queues, types: TASK_TYPES })) === 0,
    "empty task queues",
  );
  for (const w of workers) await w.stop();
  const leftover = await typeQueuesDepth(AMQP_URL, { ...queues, types: TASK_TYPES });
  await server.stop();

  const counts = resultCounts(client.frames);
  const duplicated = extraResults(counts);
  const lost = accepted.filter((id) => !counts.has(id)).length;
  const republished = server.lines.filter((l) => l.includes("se vuelve a publicar")).length;
  const stats = serverStopStats(server.lines);
  await report({
    escenario: outage.label,
    tareas: accepted.length,
    fallos: `broker fuera ${outageMs} ms con ${total} envíos en curso`,
    resultados: counts.size,
    duplicadosEntregados: duplicated,
    ...(stats === undefined ? {} : { duplicadosAbsorbidos: stats.duplicates }),
    perdidas: lost,
    ms: Date.now() - started,
    notas: `${unavailable} BROKER_UNAVAILABLE, ${republished} republicadas`,
  });
  assert.equal(lost, 0, "every accepted task has a result");
  assert.equal(duplicated, 0, "no result reached the client twice");
  assert.ok(unavailable > 0, "submits during the outage were refused, not lost");
  assert.equal(accepted.length + unavailable, total);
  assert.equal(leftover, 0, "no task was left held by a worker");
}

Deno.test({
  name:
    "a broker cut mid-stream (TCP proxy) loses no accepted task: refused submits get BROKER_UNAVAILABLE and each accepted one gets one result",
  ...rabbit,
  async fn() {
    const target = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
    await using proxy = new TcpProxy({
      hostname: target.hostname,
      port: Number(target.port || 5672),
    });
    proxy.restore();
    const url = new URL(AMQP_URL);
    url.hostname = "127.0.0.1";
    url.port = String(proxy.port);
    await runOutage({
      label: "corte del broker (proxy TCP) a mitad de lote",
      amqpUrl: url.href,
      cut: () => proxy.cut(),
      restore: () => Promise.resolve(proxy.restore()),
    }, 1_500);
  },
});

const restartRabbit = Deno.env.get("COLMENA_CAOS_RABBIT_RESTART") === "1";

async function rabbitmqctl(...args: string[]): Promise<boolean> {
  const out = await new Deno.Command("rabbitmqctl", { args, stdout: "null", stderr: "null" })
    .output()
    .catch(() => undefined);
  return out?.success ?? false;
}

async function amqpPortOpen(): Promise<boolean> {
  const url = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
  try {
    const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port || 5672) });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Starts the local RabbitMQ again (its app, or the whole node) and waits until it takes connections. */
async function ensureRabbitRunning(): Promise<void> {
  if (!(await rabbitmqctl("start_app"))) {
    await new Deno.Command("rabbitmq-server", {
      args: ["-detached"],
      stdout: "null",
      stderr: "null",
    })
      .output()
      .catch(() => undefined);
    await waitUntil(() => rabbitmqctl("start_app"), "RabbitMQ to start", 60_000);
  }
  await waitUntil(
    async () =>
      (await amqpPortOpen()) &&
      (await queueDepth(AMQP_URL, "colmena.sonda").then(() => true, () => false)),
    "RabbitMQ to answer on its port",
    60_000,
  );
}

Deno.test({
  name:
    "a real RabbitMQ restart mid-stream loses no accepted task (COLMENA_CAOS_RABBIT_RESTART=1 only)",
  ignore: rabbit.ignore || !restartRabbit,
  async fn() {
    try {
      await runOutage({
        label: "reinicio real de RabbitMQ a mitad de lote",
        amqpUrl: AMQP_URL,
        cut: async () => {
          assert.ok(await rabbitmqctl("stop_app"), "rabbitmqctl stop_app");
        },
        restore: ensureRabbitRunning,
      }, 2_000);
    } finally {
      await ensureRabbitRunning();
    }
  },
});
