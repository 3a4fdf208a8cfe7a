/**
 * Chaos: the disk of the server's data folder fills up under the SQLite store (a small tmpfs mounted for
 * the test, filled with a file). Submits get `STORE_UNAVAILABLE` saying the disk is full and publish
 * nothing; the server keeps serving; once there is room again submits are accepted, every accepted task
 * gets its result, and the database passes SQLite's integrity check.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import {
  fetchRecords,
  repliesById,
  report,
  resultCounts,
  scaled,
  sendSubmits,
  type TaskSpec,
  tempDir,
  waitUntil,
} from "../_helpers/chaos.ts";

const inCi = Deno.env.get("CI") === "true";

async function run(command: string, args: string[]): Promise<Deno.CommandOutput> {
  return await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
}

/** A tmpfs of `sizeKiB` mounted at a new folder, unmounted and removed on disposal; `undefined` if no mount. */
async function smallDisk(
  sizeKiB: number,
): Promise<({ readonly path: string } & AsyncDisposable) | undefined> {
  const dir = await tempDir("colmena-disco-");
  const out = await run("mount", ["-t", "tmpfs", "-o", `size=${sizeKiB}k`, "tmpfs", dir.path])
    .catch(() => undefined);
  if (out === undefined || !out.success) {
    await dir[Symbol.asyncDispose]();
    return undefined;
  }
  return {
    path: dir.path,
    async [Symbol.asyncDispose]() {
      await run("umount", ["-l", dir.path]).catch(() => undefined);
      await dir[Symbol.asyncDispose]();
    },
  };
}

/** Writes zeros into `file` until the disk refuses more. */
async function fill(file: string): Promise<void> {
  using f = await Deno.open(file, { write: true, create: true });
  const chunk = new Uint8Array(64 * 1024);
  try {
    for (;;) await f.write(chunk);
  } catch (err) {
    if (!(err instanceof Error) || !/space|ENOSPC|os error 28/i.test(err.message)) throw err;
  }
}

const probe = await smallDisk(64);
const canMount = probe !== undefined;
await probe?.[Symbol.asyncDispose]();
if (!canMount && inCi) {
  throw new Error("Cannot mount a tmpfs and CI=true: the disk-full test needs it");
}
if (!canMount) {
  // deno-lint-ignore no-console
  console.warn(
    "[omitido] no se puede montar un tmpfs (hace falta root): se omite la prueba de disco lleno",
  );
}

const spec = (i: number): TaskSpec => ({
  type: "echo",
  payload: { message: `tarea ${i} ${"z".repeat(500)}` },
});

Deno.test({
  name:
    "the SQLite store's disk fills up: submits get STORE_UNAVAILABLE (disk full), the server keeps serving, and recovers when space returns",
  ignore: (await needsRabbit()).ignore || !canMount,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const started = Date.now();
    await using disk = (await smallDisk(4 * 1024))!;
    await using workerData = await tempDir();
    await using queues = uniqueQueues("diskfull");
    await using server = await startServer(queues, ["--store", "sqlite", "--data-dir", disk.path]);
    await using _worker = await startWorker("w1", queues, ["--data-dir", workerData.path]);
    await using client = await RawClient.connect(server.port);
    const wave = scaled(40);

    const before = await sendSubmits(client, "a", Array.from({ length: wave }, (_, i) => spec(i)));
    await waitUntil(() => before.every((id) => repliesById(client.frames).has(id)), "first wave");

    const filler = `${disk.path}/relleno`;
    await fill(filler);
    const during = await sendSubmits(client, "b", Array.from({ length: wave }, (_, i) => spec(i)));
    await waitUntil(() => during.every((id) => repliesById(client.frames).has(id)), "full wave");
    const fullReplies = during.map((id) => repliesById(client.frames).get(id)!);
    const refused = fullReplies.filter((r) => r.type === "error");
    for (const r of refused) {
      assert.equal(r.code, "STORE_UNAVAILABLE");
      assert.match(String(r.message), /disco .* lleno/);
    }
    // The server still answers what needs no write.
    await client.sendRaw(JSON.stringify({ type: "ping", id: "p" }) + "\n");
    await waitUntil(() => repliesById(client.frames).get("p")?.type === "pong", "pong");

    await Deno.remove(filler);
    const after = await sendSubmits(client, "c", Array.from({ length: wave }, (_, i) => spec(i)));
    await waitUntil(() => after.every((id) => repliesById(client.frames).has(id)), "last wave");
    const replies = repliesById(client.frames);
    const accepted = [...before, ...during, ...after]
      .map((id) => replies.get(id)!)
      .filter((r) => r.type === "accepted")
      .map((r) => String(r.taskId));
    for (const id of after) {
      assert.equal(replies.get(id)?.type, "accepted", JSON.stringify(replies.get(id)));
    }
    await waitUntil(
      () => accepted.every((taskId) => resultCounts(client.frames).has(taskId)),
      "a result for every accepted task",
      60_000,
    );
    const records = await fetchRecords(server.port, accepted);
    for (const taskId of accepted) assert.equal(records.get(taskId)?.status, "succeeded");
    const counts = resultCounts(client.frames);
    const foreign = [...counts.keys()].filter((t) => !accepted.includes(t)).length;
    await server.stop();

    const db = new DatabaseSync(`${disk.path}/colmena.db`);
    const check = db.prepare("PRAGMA integrity_check").all();
    db.close();
    await report({
      escenario: "disco lleno en la carpeta de datos (SQLite)",
      tareas: accepted.length,
      fallos: `tmpfs de 4 MiB lleno durante ${wave} envíos`,
      resultados: counts.size,
      duplicadosEntregados: 0,
      perdidas: accepted.filter((t) => !counts.has(t)).length,
      ms: Date.now() - started,
      notas: `${refused.length} STORE_UNAVAILABLE (disco lleno); integrity_check ${
        JSON.stringify(check[0])
      }`,
    });
    assert.ok(refused.length > 0, "some submits were refused while the disk was full");
    assert.equal(foreign, 0, "no result for a refused submit");
    assert.deepEqual(check.map((row) => ({ ...row })), [{ integrity_check: "ok" }]);
  },
});
