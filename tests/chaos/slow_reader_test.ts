/**
 * Chaos: a client that submits many tasks with large results and never reads its socket. Its results pile up
 * at the server, which holds at most `maxOutputBytes` of them before it drops the client with
 * `SLOW_CONSUMER`: the server's memory stays bounded, and its other clients are unaffected.
 *
 * Memory is the server's resident set (`VmRSS`), sampled while the results flow. A server's heap grows with
 * any load, so the same flow is also measured, on a fresh server, for a client that reads: the slow reader
 * may cost little more than that, and far less than the results it is owed.
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { report, resultCounts, rssKiB, scaled, tempDir, waitUntil } from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();

const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
const RESULT_BYTES = 128 * 1024;
const MESSAGE = "r".repeat(RESULT_BYTES);

interface PileUp {
  /** Server RSS before the results flow, KiB. */
  readonly baseline: number;
  /** Highest server RSS while they flow, KiB. */
  readonly peak: number;
  /** Whether the server dropped the client with SLOW_CONSUMER. */
  readonly dropped: boolean;
}

/** Sends one `submit` per task, a hundred lines at a time (all of them would not fit in one string). */
async function sendSubmits(
  send: (bytes: Uint8Array) => Promise<void>,
  tasks: number,
): Promise<void> {
  const encoder = new TextEncoder();
  for (let first = 0; first < tasks; first += 100) {
    const lines = [];
    for (let i = first; i < Math.min(tasks, first + 100); i++) {
      const task = { type: "echo", payload: { message: MESSAGE } };
      lines.push(JSON.stringify({ type: "submit", id: `s${i}`, task }) + "\n");
    }
    await send(encoder.encode(lines.join("")));
  }
}

/**
 * On a fresh server: tasks with 128 KiB results are queued while no worker runs, then a worker starts and the
 * results flow to a client that `reads` or does not.
 */
async function pileUp(tasks: number, reads: boolean): Promise<PileUp> {
  await using queues = uniqueQueues("slowres");
  await using data = await tempDir();
  await using server = await startServer(queues, [
    "--data-dir",
    data.path,
    "--max-output-bytes",
    String(MAX_OUTPUT_BYTES),
  ]);
  await using good = new TaskClient({ host: "127.0.0.1", port: server.port });
  await using stack = new AsyncDisposableStack();
  // Warm up with the same kind of task, so the baseline includes what a working server holds anyway.
  const warm = await startWorker("calentar", queues, ["--quiet"]);
  await Promise.all(Array.from({ length: 50 }, () => good.run("echo", { message: MESSAGE })));
  await warm.stop();

  let reader: RawClient | undefined;
  if (reads) {
    reader = stack.use(await RawClient.connect(server.port));
    await sendSubmits((bytes) => reader!.sendRaw(bytes), tasks);
    await waitUntil(() => reader!.frames.length >= tasks, "every submit accepted");
  } else {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    stack.defer(() => {
      try {
        conn.close();
      } catch {
        // already closed by the server
      }
    });
    await sendSubmits(async (bytes) => {
      for (let offset = 0; offset < bytes.length;) {
        offset += await conn.write(bytes.subarray(offset));
      }
    }, tasks);
    await waitUntil(async () => {
      const { items } = await good.list({ statuses: ["queued"] }, { limit: 500 });
      return items.length >= Math.min(tasks, 500);
    }, "the submits to be recorded");
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  const baseline = await rssKiB(server.pid);
  let peak = baseline;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await rssKiB(server.pid).catch(() => 0));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  try {
    stack.use(await startWorker("w1", queues, ["--quiet", "--concurrency", "50"]));
    if (reader !== undefined) {
      const r = reader;
      await waitUntil(() => resultCounts(r.frames).size >= tasks, `${tasks} results`, 120_000);
    } else {
      await server.waitFor(/Se cierra la conexión \d+ .*SLOW_CONSUMER/, 60_000);
      await waitUntil(
        async () => {
          const { items } = await good.list({ statuses: ["queued", "running"] }, { limit: 1 });
          return items.length === 0;
        },
        "every task to finish",
        120_000,
      );
      // The other clients are unaffected.
      assert.deepEqual(await good.run("echo", { message: "sigo aquí" }), { message: "sigo aquí" });
    }
  } finally {
    sampling = false;
    await sampler;
  }
  return {
    baseline,
    peak,
    dropped: server.lines.some((l) => /Se cierra la conexión \d+ .*SLOW_CONSUMER/.test(l)),
  };
}

Deno.test({
  name:
    "a client that never reads while its results pile up is dropped with SLOW_CONSUMER and the server's memory stays bounded",
  ...rabbit,
  async fn() {
    const started = Date.now();
    // 250 MiB owed at scale 1: a server that kept what it owes would grow by that much, several times the
    // noise of a heap that grows with any load (seen here from +28 to +65 MiB, reader or not).
    const tasks = Math.max(2_000, scaled(800));
    const owedMiB = (tasks * RESULT_BYTES) / 1_048_576;
    const mib = (kib: number) => kib / 1024;
    // What a reading client costs, plus the output cap (held as strings, then as bytes being written) and
    // room for the heap's short-lived garbage; and in any case far less than what the client is owed.
    const allowance = (controlGrowth: number) =>
      Math.min(controlGrowth + 3 * mib(MAX_OUTPUT_BYTES / 1024) + 64, owedMiB / 2);
    // Now and then a server's resident set jumps by about every result at once (+195 to +250 MiB), with
    // a reading client as well as with a slow one, also before 2026-12-03. It is not results held in
    // flight: measured inside the server, the result messages received and not yet settled never passed
    // 5.3 MiB, and with a byte budget on them (`--max-result-bytes-in-flight`) the jump still came
    // (docs/benchmarks.md, "un presupuesto en bytes"). Its cause is not pinned down; the heap is the
    // suspect (the 2,000 submits alone leave the server at 0.7 to 1.5 GiB before the baseline, and its
    // collections move the figures). That spike is not the slow reader's doing, so a pair hit by it is
    // measured again, up to three times; a server that kept what a slow reader is owed fails all three.
    let slow!: PileUp;
    let control!: PileUp;
    let slowGrowth = 0;
    let controlGrowth = 0;
    for (let attempt = 1; attempt <= 3; attempt++) {
      slow = await pileUp(tasks, false);
      control = await pileUp(tasks, true);
      slowGrowth = mib(slow.peak - slow.baseline);
      controlGrowth = mib(control.peak - control.baseline);
      assert.ok(slow.dropped, "the slow reader was dropped with SLOW_CONSUMER");
      assert.ok(!control.dropped, "the reading client was not dropped");
      if (slowGrowth < allowance(controlGrowth)) break;
    }
    await report({
      escenario: "lector lento con resultados acumulados",
      tareas: tasks,
      fallos: `1 cliente que nunca lee y al que se deben ${owedMiB.toFixed(0)} MiB de resultados`,
      resultados: tasks,
      duplicadosEntregados: 0,
      perdidas: 0,
      ms: Date.now() - started,
      notas: `expulsado con SLOW_CONSUMER; memoria del servidor +${
        slowGrowth.toFixed(0)
      } MiB (con un cliente que lee: +${controlGrowth.toFixed(0)} MiB), --max-output-bytes ${
        MAX_OUTPUT_BYTES / 1_048_576
      } MiB`,
    });
    assert.ok(
      slowGrowth < allowance(controlGrowth),
      `the server grew ${slowGrowth.toFixed(1)} MiB for a client that reads nothing (reading: ${
        controlGrowth.toFixed(1)
      } MiB)`,
    );
  },
});

Deno.test({
  name:
    "a client that watches many finished tasks with large outputs and never reads is dropped without the server loading them all",
  ...rabbit,
  async fn() {
    const started = Date.now();
    const tasks = scaled(100);
    const outputBytes = 200 * 1024;
    const frames = 20;
    await using queues = uniqueQueues("slowwatch");
    await using data = await tempDir();
    await using server = await startServer(queues, [
      "--data-dir",
      data.path,
      "--max-output-bytes",
      String(MAX_OUTPUT_BYTES),
      "--write-timeout-ms",
      "2000",
    ]);
    await using _worker = await startWorker("w1", queues, ["--quiet"]);
    await using good = new TaskClient({ host: "127.0.0.1", port: server.port });
    const message = "w".repeat(outputBytes);
    const ids = await Promise.all(
      Array.from({ length: tasks }, () => good.submit("echo", { message })),
    );
    await Promise.all(ids.map((id) => good.result(id)));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const baseline = await rssKiB(server.pid);

    // Each watch names the finished tasks over and over: 10,000 ids, ~2 GB of results if all were loaded.
    const text = Array.from({ length: frames }, (_, k) =>
      JSON.stringify({
        type: "watch",
        id: `w${k}`,
        taskIds: Array.from({ length: 10_000 }, (_, i) => ids[i % tasks]),
      }) + "\n").join("");
    const bytes = new TextEncoder().encode(text);
    const slow = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    let peak = baseline;
    try {
      const writing = (async () => {
        try {
          for (let offset = 0; offset < bytes.length;) {
            offset += await slow.write(bytes.subarray(offset));
          }
        } catch {
          // dropped while still writing
        }
      })();
      const dropped = server.waitFor(/Se cierra la conexión \d+ .*SLOW_CONSUMER/, 30_000);
      let done = false;
      dropped.finally(() => done = true).catch(() => {});
      while (!done) {
        peak = Math.max(peak, await rssKiB(server.pid).catch(() => 0));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await dropped;
      slow.close();
      await writing;
    } finally {
      try {
        slow.close();
      } catch {
        // already closed
      }
    }
    assert.deepEqual(await good.run("echo", { message: "sigo aquí" }), { message: "sigo aquí" });
    const growthMiB = (peak - baseline) / 1024;
    const owedMiB = (frames * Math.min(tasks, 10_000) * outputBytes) / 1_048_576;
    await report({
      escenario: "lector lento que vigila muchas tareas terminadas",
      tareas: tasks,
      fallos: `${frames} watch de 10.000 ids sin leer (${
        owedMiB.toFixed(0)
      } MiB de resultados distintos)`,
      resultados: tasks,
      duplicadosEntregados: 0,
      perdidas: 0,
      ms: Date.now() - started,
      notas: `expulsado con SLOW_CONSUMER; memoria del servidor +${growthMiB.toFixed(0)} MiB`,
    });
    // Generous: the heap grows with short-lived garbage before it is collected. Loading what was asked
    // for would take gigabytes.
    assert.ok(
      growthMiB < 192,
      `the server grew ${growthMiB.toFixed(1)} MiB for watches it could not deliver`,
    );
  },
});
