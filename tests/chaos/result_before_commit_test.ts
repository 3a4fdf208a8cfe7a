/**
 * Chaos: a result is pushed to its client before the server's SQLite COMMIT of it, and the server is killed
 * with SIGKILL in that window. The broker still holds the result message (the server acknowledges it only
 * after the COMMIT), so the next server on the same data folder receives it again and records it: the
 * record says what the client was told.
 *
 * The window is held open by the test itself: it takes SQLite's write lock on the server's file (reads go on
 * in WAL mode) once the task is recorded as running, so the server cannot commit the result.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { needsRabbit } from "../_helpers/services.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { fetchRecords, freePort, tempDir, waitUntil } from "../_helpers/chaos.ts";

Deno.test({
  name:
    "a result pushed before its COMMIT, the server killed with SIGKILL before the COMMIT: the next server records it",
  ...(await needsRabbit()),
  async fn() {
    await using queues = uniqueQueues("early-kill");
    await using data = await tempDir();
    const port = freePort();
    const serverArgs = ["--sin-http", "--port", String(port), "--data-dir", data.path];
    await using stack = new AsyncDisposableStack();
    const first = stack.use(await startServer(queues, [...serverArgs, "--server-id", "srv-a"]));
    stack.use(await startWorker("w1", queues));

    const client = stack.use(await RawClient.connect(port));
    await client.send({ type: "hello", id: "h", client: { name: "early-kill", kind: "cli" } });
    await client.next((f) => f.type === "welcome");
    await client.send({ type: "submit", id: "s1", task: { type: "sleep", payload: { ms: 1500 } } });
    const accepted = await client.next((f) => f.id === "s1");
    assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
    const taskId = String(accepted.taskId);
    await waitUntil(
      async () => (await fetchRecords(port, [taskId])).get(taskId)?.status === "running",
      "the task recorded as running",
    );

    // From here the server cannot commit: its result waits for the lock (or fails and comes again).
    const lock = new DatabaseSync(`${data.path}/colmena.db`);
    stack.defer(() => {
      if (lock.isOpen) lock.close();
    });
    lock.exec("BEGIN IMMEDIATE");
    const result = await client.next(
      (f) => f.type === "result" && f.taskId === taskId,
      30_000,
    );
    assert.equal(result.status, "succeeded");
    first.kill("SIGKILL");
    assert.equal((await first.status).signal, "SIGKILL");
    const before = new DatabaseSync(`${data.path}/colmena.db`, { readOnly: true });
    const row = before.prepare("SELECT status FROM tasks WHERE task_id = ?").get(taskId);
    before.close();
    assert.equal(row?.status, "running", "the result was pushed before its COMMIT");
    lock.exec("ROLLBACK");
    lock.close();

    const second = stack.use(await startServer(queues, [...serverArgs, "--server-id", "srv-b"]));
    await waitUntil(
      async () => (await fetchRecords(second.port, [taskId])).get(taskId)?.status === "succeeded",
      "the redelivered result recorded by the next server",
    );
    const record = (await fetchRecords(second.port, [taskId])).get(taskId);
    assert.equal(record?.worker, result.worker);
  },
});
