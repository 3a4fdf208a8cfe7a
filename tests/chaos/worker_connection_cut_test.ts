/**
 * Chaos: a worker loses its broker connection (a TCP proxy cuts it) while its handlers still run. RabbitMQ
 * requeues what it held and a second worker runs it; the first one's handlers finish later, it reconnects,
 * and its late results are absorbed by the store: each task reaches the client once, every record is final,
 * nothing is lost, and the worker that lost its connection keeps serving on the new one.
 */
import assert from "node:assert/strict";
import { typeQueuesDepth } from "../../shared/adapters/rabbitmq/topology.ts";
import { TASK_TYPES } from "../../shared/tasks.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";
import {
  extraResults,
  fetchRecords,
  repliesById,
  report,
  resultCounts,
  scaled,
  sendSubmits,
  serverStopStats,
  type TaskSpec,
  tempDir,
  waitUntil,
} from "../_helpers/chaos.ts";
import type { Frame } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

/** Submits `specs` and returns the task ids, asserting that every one was accepted. */
async function submitAll(client: RawClient, prefix: string, specs: TaskSpec[]): Promise<string[]> {
  const ids = await sendSubmits(client, prefix, specs);
  await waitUntil(
    () => ids.every((id) => repliesById(client.frames).has(id)),
    `a reply to the ${ids.length} submits "${prefix}"`,
  );
  const replies = repliesById(client.frames);
  return ids.map((id) => {
    const reply = replies.get(id);
    assert.equal(reply?.type, "accepted", JSON.stringify(reply));
    return String(reply.taskId);
  });
}

function runningOn(records: Map<string, Frame>, worker: string): number {
  return [...records.values()].filter((r) => r.status === "running" && r.worker === worker).length;
}

Deno.test({
  name:
    "a worker whose broker connection is cut mid-task keeps serving: its held tasks run elsewhere, its late results are absorbed and each task reaches the client once",
  ...rabbit,
  async fn() {
    const started = Date.now();
    const total = scaled(20);
    const target = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
    await using proxy = new TcpProxy({
      hostname: target.hostname,
      port: Number(target.port || 5672),
    });
    proxy.restore();
    const viaProxy = new URL(AMQP_URL);
    viaProxy.hostname = "127.0.0.1";
    viaProxy.port = String(proxy.port);

    await using queues = uniqueQueues("cut");
    await using data = await tempDir();
    await using server = await startServer(queues, ["--data-dir", data.path]);
    await using stack = new AsyncDisposableStack();
    // The cut worker can hold a whole batch; the direct one takes little, so most of what runs at the cut
    // belongs to the cut one.
    const cut = stack.use(
      await startWorker("cortado", queues, [
        "--amqp-url",
        viaProxy.href,
        "--concurrency",
        String(total),
      ]),
    );
    const direct = stack.use(await startWorker("directo", queues, ["--concurrency", "4"]));
    const client = stack.use(await RawClient.connect(server.port));
    const specs: TaskSpec[] = Array.from({ length: total }, (_, i) => ({
      type: "sleep",
      payload: { ms: 300 + (i * 397) % 1_201 },
    }));
    const taskIds = await submitAll(client, "s", specs);

    // Cut while several of the cut worker's handlers run, and let it back soon: some of them end while it
    // has no connection, the others after it reconnected.
    let runningAtCut = 0;
    await waitUntil(async () => {
      runningAtCut = runningOn(await fetchRecords(server.port, taskIds), "cortado");
      return runningAtCut >= Math.min(5, total);
    }, "several tasks running on the cut worker");
    const linesBeforeCut = cut.lines.length;
    await proxy.cut();
    await cut.waitFor(/Conexión con RabbitMQ perdida/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    proxy.restore();
    await cut.waitFor(/Reconectado a RabbitMQ/, 30_000);

    await waitUntil(
      () => taskIds.every((id) => resultCounts(client.frames).has(id)),
      `a result for each of the ${total} tasks`,
      60_000,
    );

    // The cut worker keeps serving after its reconnect: with the direct one gone, it runs a second batch.
    await direct.stop();
    const secondSpecs: TaskSpec[] = Array.from({ length: scaled(5) }, (_, i) => ({
      type: "echo",
      payload: { message: `después del corte ${i}` },
    }));
    const secondIds = await submitAll(client, "d", secondSpecs);
    await waitUntil(
      () => secondIds.every((id) => resultCounts(client.frames).has(id)),
      `a result for each of the ${secondIds.length} tasks after the reconnect`,
    );
    const allIds = [...taskIds, ...secondIds];
    const records = await fetchRecords(server.port, allIds);
    for (const taskId of allIds) {
      assert.equal(records.get(taskId)?.status, "succeeded", `record of ${taskId}`);
    }
    for (const taskId of secondIds) assert.equal(records.get(taskId)?.worker, "cortado");

    await waitUntil(
      async () => (await typeQueuesDepth(AMQP_URL, { ...queues, types: TASK_TYPES })) === 0,
      "empty task queues",
    );
    // Late reports of the cut worker's first run are all out before it stops: its handlers ended long ago.
    const alive = await Promise.race([
      cut.status.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 0)),
    ]);
    await cut.stop();
    const leftover = await typeQueuesDepth(AMQP_URL, { ...queues, types: TASK_TYPES });
    await server.stop();

    const counts = resultCounts(client.frames);
    const duplicated = extraResults(counts);
    const lost = allIds.filter((id) => !counts.has(id)).length;
    const stats = serverStopStats(server.lines);
    const afterCut = cut.lines.slice(linesBeforeCut);
    const unpublished = afterCut.filter((l) => l.includes("No se pudieron publicar")).length;
    const firstIds = new Set(taskIds);
    const byCut = client.frames.filter((f) =>
      f.type === "result" && firstIds.has(String(f.taskId)) && f.worker === "cortado"
    ).length;
    const channelErrors = cut.lines.filter((l) =>
      /PRECONDITION_FAILED|unknown delivery tag|Channel closed by server/i.test(l)
    );
    await report({
      escenario: "corte de la conexión de un worker con tareas en marcha",
      tareas: allIds.length,
      fallos: `proxy TCP corta al worker con ${runningAtCut} de ${total} sleeps en marcha`,
      resultados: counts.size,
      duplicadosEntregados: duplicated,
      ...(stats === undefined ? {} : { duplicadosAbsorbidos: stats.duplicates }),
      perdidas: lost,
      ms: Date.now() - started,
      notas: `${byCut}/${total} resultados del worker cortado (tardíos o de nuevas entregas), ` +
        `${unpublished} lotes sin publicar mientras estaba sin conexión; ` +
        `${secondIds.length} tareas más tras reconectar, todas en él`,
    });
    assert.ok(alive, "the cut worker was still running");
    assert.deepEqual(channelErrors, [], "no ack of a dead channel reached the new one");
    assert.equal(lost, 0, "every accepted task has a result");
    assert.equal(duplicated, 0, "no result reached the client twice");
    assert.equal(leftover, 0, "no task was left held by a worker");
  },
});
