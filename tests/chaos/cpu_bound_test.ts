/**
 * Chaos: a handler that computes for ever without yielding or looking at its AbortSignal. It runs in a
 * thread of the worker's pool, so the worker keeps beating, acking and running other tasks; at its
 * `timeoutMs` its thread is terminated, the task fails with `TIMEOUT`, and the pool carries on with fresh
 * threads.
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import type { TaskResult } from "../../client/task_client.ts";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, uniqueQueues } from "../_helpers/processes.ts";
import { SPIN } from "../_helpers/chaos_worker.ts";
import {
  report,
  scaled,
  startChaosWorker,
  tempDir,
  waitUntil,
  withDeadline,
} from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();

Deno.test({
  name:
    "a handler that never yields is isolated in a thread: the worker keeps beating and working, and the timeout terminates it",
  ...rabbit,
  async fn() {
    const started = Date.now();
    await using queues = uniqueQueues("cpu");
    await using data = await tempDir();
    await using server = await startServer(queues, ["--data-dir", data.path]);
    // More spinning tasks than the pool has threads (one per core), so some wait for a thread; and room in
    // the prefetch for the other tasks.
    const spinners = scaled(3);
    await using worker = await startChaosWorker("calculista", queues, [
      "--concurrency",
      String(spinners + 8),
      "--heartbeat-ms",
      "200",
      "--drain-timeout-ms",
      "1000",
    ]);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port });
    const order: string[] = [];
    client.onResult((r) => order.push(r.taskId));

    const spins: string[] = [];
    for (let i = 0; i < spinners; i++) {
      spins.push(
        await client.submit("echo", { message: SPIN }, { timeoutMs: 3_000, maxAttempts: 1 }),
      );
    }
    // While they spin, the worker's heartbeats keep arriving...
    const seen = async () =>
      (await client.workers()).find((w) => w.worker === "calculista")?.lastSeen ?? "";
    const before = await seen();
    await new Promise((resolve) => setTimeout(resolve, 800));
    const after = await seen();
    assert.ok(after > before, `heartbeats while spinning: ${before} → ${after}`);
    // ...its inline tasks run at once, and its tasks for threads wait for one.
    const inline = await Promise.all(
      Array.from(
        { length: scaled(20) },
        (_, i) =>
          i % 2 === 0
            ? client.submit("echo", { message: i })
            : client.submit("numbers", { numbers: [i, 2 * i] }),
      ),
    );
    // Tasks of different types come from their own queues, served in turn: a threaded `hash` waiting for a
    // thread would hold a prefetch slot the inline tasks need, so those are sent once the inline ones ended.
    await withDeadline(
      Promise.all(inline.map((id) => client.result(id))),
      "the inline results",
      60_000,
    );
    const threaded = await Promise.all(
      Array.from(
        { length: scaled(4) },
        (_, i) => client.submit("hash", { data: `d${i}`, iterations: 5_000 }),
      ),
    );
    const others = [...inline, ...threaded];
    const results = new Map<string, TaskResult>();
    await withDeadline(
      Promise.all(
        [...spins, ...others].map(async (id) => results.set(id, await client.result(id))),
      ),
      "every result",
      60_000,
    );
    for (const id of spins) {
      const r = results.get(id)!;
      assert.ok(r.status === "failed", JSON.stringify(r));
      assert.equal(r.error.code, "TIMEOUT");
      assert.equal(r.attempts, 1);
    }
    const firstSpinEnd = Math.min(...spins.map((id) => order.indexOf(id)));
    assert.ok(
      inline.every((id) => order.indexOf(id) < firstSpinEnd),
      "the inline tasks end while the spinning ones still run",
    );
    // The spinning threads were terminated at their timeout: with every thread still busy, these would
    // wait for ever.
    for (const id of others) {
      assert.equal(results.get(id)?.status, "succeeded", JSON.stringify(results.get(id)));
    }

    // And the worker still stops cleanly on SIGTERM while a handler spins in a thread.
    const last = await client.submit("echo", { message: SPIN }, {
      timeoutMs: 60_000,
      maxAttempts: 1,
    });
    await waitUntil(
      async () => (await client.status(last)).status === "running",
      "the spin to start",
    );
    const { code } = await worker.stop();
    assert.equal(code, 0, "the worker exits 0 after SIGTERM");
    assert.ok(
      worker.lines.some((l) => /Worker calculista detenido/.test(l)),
      "drained and stopped",
    );
    // Handed back unacknowledged, not lost: it waits for the next worker.
    assert.ok(
      ["queued", "running"].includes((await client.status(last)).status),
      "the interrupted task is still pending",
    );

    await report({
      escenario: "manejador que calcula sin ceder nunca",
      tareas: spinners + others.length + 1,
      fallos:
        `${spinners} tareas en bucle infinito sin mirar su AbortSignal (hilos: uno por núcleo)`,
      resultados: spinners + others.length,
      duplicadosEntregados: 0,
      perdidas: 0,
      ms: Date.now() - started,
      notas:
        "TIMEOUT a su hora y hilo terminado; latidos y tareas en línea sin pausa; las de hilo, después; SIGTERM limpio",
    });
  },
});
