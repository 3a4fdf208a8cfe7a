/**
 * Chaos: a worker stopped with SIGTERM in the middle of its tasks. It finishes what it holds (or, past its
 * drain timeout, hands it back) and exits; nothing is lost and no task runs to its end twice.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import {
  extraResults,
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

/** How many times each task (by the 8-character prefix that workers print) ran to its end, per the logs. */
function completions(logs: readonly string[][]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const lines of logs) {
    for (const line of lines) {
      const m = line.match(/^\[[^\]]+\] (?:✓|✗ \w+) \w+ ([0-9a-f]{8}) /);
      if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    }
  }
  return counts;
}

async function sigtermScenario(options: {
  label: string;
  taskMs: number;
  total: number;
  drainArgs: string[];
  expectHandBack: boolean;
}): Promise<void> {
  const started = Date.now();
  await using queues = uniqueQueues("sigterm");
  await using data = await tempDir();
  await using server = await startServer(queues, ["--data-dir", data.path]);
  await using stack = new AsyncDisposableStack();
  const leaving = stack.use(
    await startWorker("saliente", queues, ["--concurrency", "10", ...options.drainArgs]),
  );
  const staying = stack.use(await startWorker("restante", queues, ["--concurrency", "10"]));
  const client = stack.use(await RawClient.connect(server.port));

  const specs: TaskSpec[] = Array.from(
    { length: options.total },
    () => ({ type: "sleep", payload: { ms: options.taskMs } }),
  );
  const ids = await sendSubmits(client, "s", specs);
  await waitUntil(() => repliesById(client.frames).size === ids.length, "every accepted");
  const replies = repliesById(client.frames);
  const taskIds = ids.map((id) => {
    const reply = replies.get(id);
    assert.equal(reply?.type, "accepted", JSON.stringify(reply));
    return String(reply.taskId);
  });

  // Stop it once it has finished a few tasks and holds a full prefetch of others.
  await waitUntil(
    () => leaving.lines.filter((l) => l.startsWith("[saliente] ✓")).length >= 3,
    "the leaving worker to finish some tasks",
  );
  const doneAtSignal = leaving.lines.filter((l) => l.startsWith("[saliente] ✓")).length;
  leaving.kill("SIGTERM");
  const status = await leaving.status;
  assert.equal(status.code, 0, leaving.lines.join("\n"));

  await waitUntil(
    () => taskIds.every((taskId) => resultCounts(client.frames).has(taskId)),
    `${taskIds.length} results`,
    60_000,
  );
  await staying.stop();
  await server.stop();
  const absorbed = serverStopStats(server.lines);

  const counts = resultCounts(client.frames);
  const runs = completions([leaving.lines, staying.lines]);
  const twice = [...runs.values()].filter((n) => n > 1).length;
  const byLeaving = leaving.lines.filter((l) => l.startsWith("[saliente] ✓")).length;
  const lost = taskIds.filter((id) => !counts.has(id)).length;
  await report({
    escenario: options.label,
    tareas: taskIds.length,
    fallos: `SIGTERM a 1 de 2 workers tras ${doneAtSignal} tareas suyas; terminó ${byLeaving}`,
    resultados: counts.size,
    duplicadosEntregados: extraResults(counts),
    ...(absorbed === undefined ? {} : { duplicadosAbsorbidos: absorbed.duplicates }),
    perdidas: lost,
    ms: Date.now() - started,
    notas: `${twice} tareas ejecutadas hasta el final dos veces`,
  });
  assert.equal(lost, 0, "every task has a result");
  assert.equal(extraResults(counts), 0, "no result reached the client twice");
  for (const f of client.frames.filter((f) => f.type === "result")) {
    assert.equal(f.status, "succeeded", JSON.stringify(f));
  }
  assert.equal(runs.size, taskIds.length, "every task ran to its end somewhere");
  assert.equal(twice, 0, "no task ran to its end twice");
  if (options.expectHandBack) {
    assert.ok(
      leaving.lines.some((l) => l.includes("Señal SIGTERM")) &&
        staying.lines.filter((l) => l.startsWith("[restante] ✓")).length > 0,
      "the tasks handed back ran on the other worker",
    );
  }
}

Deno.test({
  name:
    "a worker stopped with SIGTERM mid-task finishes what it holds: nothing lost, no task run twice",
  ...rabbit,
  async fn() {
    await sigtermScenario({
      label: "SIGTERM a un worker con tareas en curso",
      taskMs: 150,
      total: scaled(200),
      drainArgs: [],
      expectHandBack: false,
    });
  },
});

Deno.test({
  name:
    "a worker stopped with SIGTERM past its drain timeout hands its tasks back: they run once elsewhere",
  ...rabbit,
  async fn() {
    await sigtermScenario({
      label: "SIGTERM con espera agotada: devuelve sus tareas",
      taskMs: 1_000,
      total: scaled(60),
      drainArgs: ["--drain-timeout-ms", "100"],
      expectHandBack: true,
    });
  },
});
