/**
 * Chaos: tasks that never succeed. A handler that always throws, and one that always times out, are retried
 * with exponential backoff and end in the dead-letter queue after `maxAttempts`; a task that hangs is
 * aborted at its `timeoutMs`; a permanent error is not retried. None of them holds up the other tasks, and
 * once the bug is fixed (`worker.ts` instead of the poisoned chaos worker) `dlq reintentar` runs the task
 * again and its new result is recorded.
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import type { TaskResult } from "../../client/task_client.ts";
import { retryQueue, typeQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { deleteQueues } from "../../shared/adapters/rabbitmq/topology.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { POISON } from "../_helpers/chaos_worker.ts";
import {
  report,
  scaled,
  startChaosWorker,
  tempDir,
  waitUntil,
  withDeadline,
} from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();

const RETRY_BASE_MS = 100;

Deno.test({
  name:
    "a poison task ends in the DLQ after maxAttempts with backoff, a hanging one times out, neither blocks the rest, and dlq reintentar runs it again",
  ...rabbit,
  async fn() {
    const started = Date.now();
    await using queues = uniqueQueues("poison");
    await using data = await tempDir();
    await using stack = new AsyncDisposableStack();
    // The retry queues (of `echo` and `hash`, which are retried) are declared on first use, with delays
    // outside the default backoff that `uniqueQueues` removes.
    stack.defer(async () => {
      const retried = ["echo", "hash"].map((type) => typeQueue(queues.taskQueue, type));
      await deleteQueues(
        AMQP_URL,
        retried.flatMap((q) => [retryQueue(q, RETRY_BASE_MS), retryQueue(q, 2 * RETRY_BASE_MS)]),
      ).catch(() => {});
    });
    const server = stack.use(await startServer(queues, ["--data-dir", data.path]));
    const buggy = stack.use(
      await startChaosWorker("con-fallo", queues, [
        "--retry-base-ms",
        String(RETRY_BASE_MS),
        "--concurrency",
        "4",
      ]),
    );
    const client = new TaskClient({ host: "127.0.0.1", port: server.port });
    stack.defer(() => client.close());
    const order: string[] = [];
    client.onResult((r) => order.push(r.taskId));

    const t0 = performance.now();
    const poison = await client.submit("echo", { message: POISON });
    const poisonDone = client.result(poison).then((r) => ({ r, ms: performance.now() - t0 }));
    // Always times out: 1,000,000 SHA-256 rounds cannot finish in 5 ms.
    const stubborn = await client.submit(
      "hash",
      { data: "colmena", iterations: 1_000_000 },
      { timeoutMs: 5 },
    );
    const normalCount = scaled(60);
    // Long enough for the normal tasks to finish on a loaded machine, though each timed-out attempt of
    // `stubborn` stalls the worker while its thread is replaced (~0.1 s here).
    const hanging = await client.submit("sleep", { ms: 60_000 }, {
      timeoutMs: 3_000 + 20 * normalCount,
      maxAttempts: 1,
    });
    // The sum overflows: INVALID_PAYLOAD, a permanent error.
    const permanent = await client.submit("numbers", { numbers: [1.7e308, 1.7e308] });
    const normal: string[] = [];
    for (let i = 0; i < normalCount; i++) {
      normal.push(
        await client.submit(
          i % 3 === 0 ? "sleep" : "echo",
          i % 3 === 0 ? { ms: 20 } : { message: i },
        ),
      );
    }
    const all = [poison, stubborn, hanging, permanent, ...normal];
    const results = new Map<string, TaskResult>();
    await withDeadline(
      Promise.all(all.map(async (id) => results.set(id, await client.result(id)))),
      "every result",
      60_000,
    );
    const { r: poisonResult, ms: poisonMs } = await poisonDone;
    assert.equal(poisonResult.status, "failed", "two callers waiting for one task both get it");

    for (const id of normal) assert.equal(results.get(id)?.status, "succeeded");
    // Neither the poison nor the hanging task held the others up.
    const hangingAt = order.indexOf(hanging);
    assert.ok(normal.every((id) => order.indexOf(id) < hangingAt), "normal tasks end first");

    const failed = (id: string) => {
      const r = results.get(id)!;
      assert.ok(r.status === "failed", JSON.stringify(r));
      return r;
    };
    const p = failed(poison);
    assert.equal(p.error.code, "TASK_FAILED");
    assert.equal(p.attempts, 3);
    assert.match(p.error.message, /tras 3 de 3 intentos/);
    // Backoff: 100 ms before the 2nd attempt and 200 before the 3rd.
    assert.ok(poisonMs >= 3 * RETRY_BASE_MS, `backoff waited, took ${poisonMs} ms`);
    for (const [attempt, delay] of [[1, 100], [2, 200]]) {
      const line = new RegExp(
        `↻ echo ${
          poison.slice(0, 8)
        } intento ${attempt}/3 falló \\(TASK_FAILED\\); reintento en ${delay} ms`,
      );
      assert.ok(buggy.lines.some((l) => line.test(l)), `retry notice ${attempt}`);
    }
    const s = failed(stubborn);
    assert.equal(s.error.code, "TIMEOUT");
    assert.equal(s.attempts, 3);
    const h = failed(hanging);
    assert.equal(h.error.code, "TIMEOUT");
    assert.equal(h.attempts, 1);
    const pe = failed(permanent);
    assert.equal(pe.error.code, "INVALID_PAYLOAD");
    assert.equal(pe.attempts, 1, "a permanent error is not retried");

    const record = await client.status(poison);
    assert.equal(record.status, "failed");
    assert.equal(record.attempts, 3);
    assert.equal(record.maxAttempts, 3);

    // The dead-letter queue holds what failed for good after its attempts, and listing leaves it there.
    const dead = await client.deadLetters(100);
    assert.deepEqual(new Set(dead.map((d) => d.taskId)), new Set([poison, stubborn, hanging]));
    const deadPoison = dead.find((d) => d.taskId === poison)!;
    assert.equal(deadPoison.attempt, 3);
    assert.equal(deadPoison.maxAttempts, 3);
    assert.equal(deadPoison.error?.code, "TASK_FAILED");
    assert.equal((await client.deadLetters(100)).length, 3);

    // The fix is deployed: the plain worker replaces the poisoned one, and the task is requeued.
    await buggy.stop();
    stack.use(await startWorker("arreglado", queues));
    assert.deepEqual(await client.requeueDeadLetters([poison]), [poison]);
    await waitUntil(
      async () => (await client.status(poison)).status === "succeeded",
      "the requeued task to succeed",
    );
    const fixed = await client.status(poison);
    assert.deepEqual(fixed.output, { message: POISON });
    assert.equal(fixed.error, undefined);
    assert.deepEqual(
      new Set((await client.deadLetters(100)).map((d) => d.taskId)),
      new Set([stubborn, hanging]),
    );

    const retries = buggy.lines.filter((l) => l.includes(" ↻ ")).length;
    await report({
      escenario: "tarea envenenada, tarea colgada y error permanente",
      tareas: all.length,
      fallos: "1 tarea que lanza siempre, 1 que agota su tiempo siempre, 1 colgada, 1 permanente",
      resultados: results.size,
      duplicadosEntregados: order.length - new Set(order).size,
      perdidas: all.length - results.size,
      ms: Date.now() - started,
      notas: `${retries} reintentos con espera; 3 a la DLQ; reintentada desde la DLQ con éxito`,
    });
    assert.equal(order.length, new Set(order).size, "one result per task");
  },
});
