/**
 * Chaos: a worker killed with SIGKILL in the middle of a batch. The tasks it held go back to the queue and
 * run elsewhere; whatever ran twice is absorbed by the store, so each client gets exactly one result per task.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
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

const rabbit = await needsRabbit();

Deno.test({
  name:
    "a worker killed with SIGKILL mid-batch loses no task: each client gets one result per task and every record is final",
  ...rabbit,
  async fn() {
    const started = Date.now();
    const total = scaled(1_000);
    const clientCount = 4;
    await using queues = uniqueQueues("kill9");
    await using data = await tempDir();
    await using server = await startServer(queues, ["--data-dir", data.path]);
    await using stack = new AsyncDisposableStack();
    const victim = stack.use(await startWorker("victima", queues, ["--concurrency", "20"]));
    const survivor = stack.use(await startWorker("superviviente", queues, ["--concurrency", "20"]));
    const clients: RawClient[] = [];
    for (let i = 0; i < clientCount; i++) {
      clients.push(stack.use(await RawClient.connect(server.port)));
    }

    // Tasks that take a while, so that the victim holds a full prefetch of them when it dies.
    const specs: TaskSpec[] = Array.from({ length: total }, (_, i) => ({
      type: i % 5 === 0 ? "echo" : "sleep",
      payload: i % 5 === 0 ? { message: `tarea ${i}` } : { ms: 40 },
    }));
    const perClient = Math.ceil(total / clientCount);
    const requestIds = await Promise.all(
      clients.map((c, k) => sendSubmits(c, "s", specs.slice(k * perClient, (k + 1) * perClient))),
    );
    const taskIds: string[] = [];
    await waitUntil(() => {
      return clients.every((c, k) => repliesById(c.frames).size === requestIds[k]!.length);
    }, "every submit to be answered");
    clients.forEach((c, k) => {
      const replies = repliesById(c.frames);
      for (const id of requestIds[k]!) {
        const reply = replies.get(id);
        assert.equal(reply?.type, "accepted", JSON.stringify(reply));
        taskIds.push(String(reply.taskId));
      }
    });
    assert.equal(taskIds.length, total);

    const received = () => clients.reduce((n, c) => n + resultCounts(c.frames).size, 0);
    await waitUntil(() => received() >= total * 0.3, "a third of the results");
    const atKill = received();
    victim.kill("SIGKILL");
    const killed = await victim.status;
    assert.equal(killed.signal, "SIGKILL");
    const replacement = stack.use(
      await startWorker("relevo", queues, ["--concurrency", "20"]),
    );
    await waitUntil(() => received() >= total, `${total} results`, 60_000);

    // Every record is final and succeeded; then the processes stop gracefully, so that a late duplicate
    // would still reach the clients before they are counted.
    const records = await fetchRecords(server.port, taskIds);
    assert.equal(records.size, total);
    for (const [taskId, record] of records) {
      assert.equal(record.status, "succeeded", `${taskId}: ${JSON.stringify(record)}`);
    }
    await replacement.stop();
    await survivor.stop();
    await server.stop();
    const counts = new Map<string, number>();
    for (const c of clients) {
      for (const [taskId, n] of resultCounts(c.frames)) {
        counts.set(taskId, (counts.get(taskId) ?? 0) + n);
      }
    }
    const duplicated = extraResults(counts);
    const lost = taskIds.filter((id) => !counts.has(id)).length;
    const stats = serverStopStats(server.lines);
    await report({
      escenario: "kill -9 de un worker a mitad de lote",
      tareas: total,
      fallos: `kill -9 de 1 de 2 workers con ${atKill}/${total} resultados; arranca un relevo`,
      resultados: counts.size,
      duplicadosEntregados: duplicated,
      ...(stats === undefined ? {} : { duplicadosAbsorbidos: stats.duplicates }),
      perdidas: lost,
      ms: Date.now() - started,
    });
    assert.equal(lost, 0, "every accepted task has a result");
    assert.equal(duplicated, 0, "no client got a result twice");
    assert.ok(atKill < total, "the worker died with tasks still to do");
  },
});
