/**
 * Chaos: the server killed with SIGKILL while tasks are in flight, then started again on the same port and
 * the same data folder (the SQLite store survives). `TaskClient`s reconnect, resend what had no reply (same
 * idempotency keys) and watch what they still await: every task they submitted resolves, once.
 *
 * Two routing paths: the new server keeps the old id (results come back through its own reply queue and the
 * shared result queue as its own), or it has a new id (results carry the dead server's id as their origin,
 * and reach the waiting client through `watch` and the store).
 */
import assert from "node:assert/strict";
import { TaskClient } from "../../client.ts";
import type { TaskResult } from "../../client/task_client.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import {
  fetchRecords,
  freePort,
  repliesById,
  report,
  scaled,
  sendSubmits,
  serverStopStats,
  tempDir,
  waitUntil,
  withDeadline,
} from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();

async function serverKillScenario(newServerId: string): Promise<void> {
  const started = Date.now();
  const clientCount = 4;
  const perClient = scaled(100);
  const total = clientCount * perClient;
  await using queues = uniqueQueues("srvkill");
  await using data = await tempDir();
  const port = freePort();
  const serverArgs = (
    id: string,
  ) => ["--port", String(port), "--data-dir", data.path, "--server-id", id];
  await using stack = new AsyncDisposableStack();
  const first = stack.use(await startServer(queues, serverArgs("srv-a")));
  stack.use(await startWorker("w1", queues, ["--concurrency", "20"]));
  stack.use(await startWorker("w2", queues, ["--concurrency", "20"]));

  const seen = new Map<string, number>();
  const clients = Array.from({ length: clientCount }, (_, k) => {
    const client = new TaskClient({
      host: "127.0.0.1",
      port,
      name: `cliente-${k}`,
      reconnectForMs: 30_000,
      requestTimeoutMs: 60_000,
    });
    client.onResult((r) => seen.set(r.taskId, (seen.get(r.taskId) ?? 0) + 1));
    stack.defer(() => client.close());
    return client;
  });

  // Each client streams its submits; half of them wait for each result right away, the other half only
  // after all their submits are accepted (so some accepted tasks have nobody waiting yet when the server dies).
  let accepted = 0;
  const work = clients.map(async (client, k) => {
    const submits: Promise<string>[] = [];
    const results: Promise<TaskResult>[] = [];
    for (let i = 0; i < perClient; i++) {
      const submit = client.submit("sleep", { ms: 200 + (i % 5) * 50 }).then((taskId) => {
        accepted++;
        return taskId;
      });
      submits.push(submit);
      if (k % 2 === 0) results.push(submit.then((taskId) => client.result(taskId)));
      await new Promise((resolve) => setTimeout(resolve, 8));
    }
    const taskIds = await Promise.all(submits);
    if (k % 2 === 1) results.push(...taskIds.map((taskId) => client.result(taskId)));
    return { taskIds, results: await Promise.all(results) };
  });
  const settled = Promise.allSettled(work);

  await waitUntil(() => accepted >= total / 3, "a third of the submits accepted");
  first.kill("SIGKILL");
  assert.equal((await first.status).signal, "SIGKILL");
  const atKill = accepted;
  const second = stack.use(await startServer(queues, serverArgs(newServerId)));

  const outcomes = await withDeadline(settled, "every submitted task to resolve", 90_000);
  const taskIds: string[] = [];
  for (const outcome of outcomes) {
    if (outcome.status === "rejected") throw outcome.reason;
    taskIds.push(...outcome.value.taskIds);
    for (const result of outcome.value.results) {
      assert.equal(result.status, "succeeded", JSON.stringify(result));
    }
  }
  assert.equal(new Set(taskIds).size, total, "one task per submit, resends included");
  const records = await fetchRecords(second.port, taskIds);
  for (const taskId of taskIds) {
    assert.equal(records.get(taskId)?.status, "succeeded", `record of ${taskId}`);
  }
  const duplicated = [...seen.values()].reduce((n, c) => n + Math.max(0, c - 1), 0);
  const lost = taskIds.filter((id) => !seen.has(id)).length;
  const reconnects = clients.reduce((n, c) => n + c.reconnects, 0);
  await Promise.all(clients.map((c) => c.close()));
  await second.stop();
  const absorbed = serverStopStats(second.lines);
  await report({
    escenario: `kill -9 del servidor y arranque con ${
      newServerId === "srv-a" ? "el mismo id" : "otro id"
    }`,
    tareas: total,
    fallos: `kill -9 del servidor con ${atKill}/${total} envíos aceptados`,
    resultados: seen.size,
    duplicadosEntregados: duplicated,
    ...(absorbed === undefined ? {} : { duplicadosAbsorbidos: absorbed.duplicates }),
    perdidas: lost,
    ms: Date.now() - started,
    notas: `${reconnects} reconexiones de ${clientCount} clientes`,
  });
  assert.equal(lost, 0, "every submitted task resolved");
  assert.equal(duplicated, 0, "no client saw a result twice");
  assert.ok(reconnects >= clientCount, "every client reconnected");
}

Deno.test({
  name:
    "a server killed with SIGKILL and restarted with the same id on the same port: TaskClients reconnect and every pending task resolves once",
  ...rabbit,
  async fn() {
    await serverKillScenario("srv-a");
  },
});

Deno.test({
  name:
    "a server killed with SIGKILL and replaced by one with another id: TaskClients reconnect and every pending task resolves once",
  ...rabbit,
  async fn() {
    await serverKillScenario("srv-b");
  },
});

Deno.test({
  name:
    "a server killed while its submits wait for the broker's confirm: the resent submits are published again and every task runs once",
  ...rabbit,
  async fn() {
    const started = Date.now();
    const count = scaled(20);
    await using queues = uniqueQueues("srvkill");
    await using data = await tempDir();
    const target = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
    await using proxy = new TcpProxy({
      hostname: target.hostname,
      port: Number(target.port || 5672),
    });
    proxy.restore();
    const viaProxy = new URL(AMQP_URL);
    viaProxy.hostname = "127.0.0.1";
    viaProxy.port = String(proxy.port);
    const port = freePort();
    const serverArgs = [
      "--sin-http",
      "--port",
      String(port),
      "--data-dir",
      data.path,
      "--server-id",
      "srv-a",
      "--amqp-url",
      viaProxy.href,
    ];
    await using stack = new AsyncDisposableStack();
    const first = stack.use(await startServer(queues, serverArgs));
    stack.use(await startWorker("w1", queues));
    const client = new TaskClient({ host: "127.0.0.1", port, reconnectForMs: 30_000 });
    stack.defer(() => client.close());
    const seen = new Map<string, number>();
    client.onResult((r) => seen.set(r.taskId, (seen.get(r.taskId) ?? 0) + 1));
    for (let i = 0; i < count; i++) await client.run("echo", { message: `antes ${i}` });

    // The broker stops answering the server: these submits are recorded, and their publishes never
    // confirmed (nor delivered). Then the server dies.
    proxy.stall();
    const stuck = Promise.all(Array.from(
      { length: count },
      (_, i) =>
        client.submit("echo", { message: `atascada ${i}` }).then((taskId) => client.result(taskId)),
    ));
    stuck.catch(() => {}); // awaited below; a failure before then must not go unhandled
    await using probe = await RawClient.connect(port);
    let polls = 0;
    await waitUntil(async () => {
      const id = `l${polls++}`;
      await probe.send({ type: "list", id, filter: { statuses: ["queued"] }, limit: 500 });
      return ((await probe.reply(id)).items as unknown[]).length >= count;
    }, `${count} tasks recorded and waiting for their confirm`);
    first.kill("SIGKILL");
    await first.status;
    await probe.close();
    await proxy.cut();
    proxy.restore();
    stack.use(await startServer(queues, serverArgs));

    const results = await withDeadline(stuck, "the stuck tasks to run", 60_000);
    for (const result of results) assert.equal(result.status, "succeeded", JSON.stringify(result));
    const duplicated = [...seen.values()].reduce((n, c) => n + Math.max(0, c - 1), 0);
    await report({
      escenario: "kill -9 del servidor con envíos sin confirmar del broker",
      tareas: 2 * count,
      fallos: `broker mudo para el servidor y kill -9 con ${count} envíos sin confirmar`,
      resultados: seen.size,
      duplicadosEntregados: duplicated,
      perdidas: 2 * count - seen.size,
      ms: Date.now() - started,
    });
    assert.equal(seen.size, 2 * count, "every task resolved");
    assert.equal(duplicated, 0, "no result was seen twice");
  },
});

Deno.test({
  name:
    "a server killed with SIGKILL in the middle of a burst of submits: after a restart every task it answered accepted has its own record",
  ...rabbit,
  async fn() {
    const started = Date.now();
    const total = scaled(3000);
    await using queues = uniqueQueues("srvkill");
    await using data = await tempDir();
    const port = freePort();
    const serverArgs = ["--sin-http", "--port", String(port), "--data-dir", data.path];
    await using stack = new AsyncDisposableStack();
    // No worker: a result would write the record again (as a task of an unknown client), so what is
    // found after the restart can only be what the store had committed before it answered `accepted`.
    const first = stack.use(await startServer(queues, serverArgs));
    const client = await RawClient.connect(port);
    stack.defer(() => client.close());
    const acceptedIds = () => client.frames.filter((f) => f.type === "accepted");
    // The kill follows the tenth of the submits accepted at once, as that frame is read: polling for it
    // let a fast server answer the whole burst before the kill landed.
    let seen = 0;
    const aTenth = client.next((f) => f.type === "accepted" && ++seen >= total / 10, 60_000);
    // Four streams of submits at once, each written without waiting for any reply.
    const streams = Array.from({ length: 4 }, (_, k) =>
      sendSubmits(
        client,
        `r${k}-`,
        Array.from({ length: total / 4 }, (_, i) => ({
          type: "echo",
          payload: { message: `ráfaga ${k} ${i}` },
        })),
      ));
    await aTenth;
    first.kill("SIGKILL");
    // A stream still writing when the server died fails its write: what it sent is what counts.
    await Promise.allSettled(streams);
    await first.status;
    await waitUntil(() => client.closedByPeer, "the connection to the killed server to close");
    const accepted = acceptedIds().map((f) => String(f.taskId));
    const answered = repliesById(client.frames).size;

    const second = stack.use(await startServer(queues, serverArgs));
    const records = await fetchRecords(second.port, accepted);
    const missing = accepted.filter((taskId) => {
      const record = records.get(taskId);
      // The record of the submit: queued (nothing ran), of its type and its client, not one rebuilt.
      return record?.status !== "queued" || record.taskType !== "echo" ||
        (record.client as { name?: string } | undefined)?.name === "desconocido";
    });
    await report({
      escenario: "kill -9 del servidor en plena ráfaga de envíos (SQLite)",
      tareas: total,
      fallos: `kill -9 con ${accepted.length} aceptadas y ${total - answered} sin respuesta`,
      resultados: 0,
      duplicadosEntregados: 0,
      perdidas: missing.length,
      ms: Date.now() - started,
      notas: "cada tarea aceptada se busca con status tras el arranque",
    });
    assert.ok(answered < total, "the server died with submits still unanswered");
    assert.ok(accepted.length > 0);
    assert.deepEqual(missing, [], "every accepted task has its record");
  },
});
