/**
 * Chaos: the S3-compatible object store goes away (a TCP proxy between it and the server and workers, cut
 * and refusing connections) while large payloads and large outputs are written. Submits whose payload cannot
 * be stored get `BLOB_UNAVAILABLE` and publish nothing; no published task names a missing object; a worker
 * whose output cannot be stored does not acknowledge the task, which comes again and runs once the store is
 * back; every accepted task gets one result.
 */
import assert from "node:assert/strict";
import { needsRabbit, needsS3, s3Target } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";
import {
  acceptedOrRefused,
  extraResults,
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

const ignore = (await needsRabbit()).ignore || (await needsS3()).ignore;
/** Over the default claim-check threshold (256 KiB): the payload and the echoed output become objects. */
const BIG = "x".repeat(300 * 1024);
/** Under the threshold as a payload, over it as the `text` task's output (words, reversed, upper case). */
const MEDIUM = "y".repeat(150 * 1024);

function specAt(i: number): TaskSpec {
  return i % 2 === 0
    ? { type: "echo", payload: { message: `${i}:${BIG}` } }
    : { type: "echo", payload: { message: `tarea ${i}` } };
}

Deno.test({
  name:
    "the object store cut mid-stream: submits get BLOB_UNAVAILABLE, nothing names a missing object, every accepted task gets one result",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const started = Date.now();
    const target = await s3Target();
    assert.ok(!(target instanceof Error));
    const endpoint = new URL(target.endpoint);
    await using proxy = new TcpProxy({
      hostname: endpoint.hostname,
      port: Number(endpoint.port || 80),
    });
    proxy.restore();
    const proxied = new URL(target.endpoint);
    proxied.hostname = "127.0.0.1";
    proxied.port = String(proxy.port);
    const env = {
      S3_ENDPOINT: proxied.href.replace(/\/$/, ""),
      S3_BUCKET: target.bucket,
      S3_REGION: target.region,
      S3_PREFIX: `caos/${crypto.randomUUID()}`,
      AWS_ACCESS_KEY_ID: target.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: target.credentials.secretAccessKey,
      DATABASE_URL: "",
    };
    await using queues = uniqueQueues("blobout");
    await using data = await tempDir();
    await using server = await startServer(queues, ["--data-dir", data.path], env);
    await using worker = await startWorker("w1", queues, ["--data-dir", data.path], env);
    await using client = await RawClient.connect(server.port);

    const total = scaled(60);
    const wave = 4;
    const requestIds: string[] = [];
    let outageDone: Promise<void> | undefined;
    for (let sent = 0; sent < total; sent += wave) {
      if (outageDone === undefined && sent >= total / 3) {
        // The worker is paused while a wave is accepted, so that it reads those payloads and writes their
        // outputs during the outage.
        Deno.kill(worker.pid, "SIGSTOP");
        // Half read a payload object; half (`text` of 150 KiB, inline) write an output object of ~300 KiB.
        const held = Array.from(
          { length: wave },
          (_, k) =>
            k % 2 === 0 ? specAt(2 * k) : { type: "text", payload: { text: `${k} ${MEDIUM}` } },
        );
        requestIds.push(...await sendSubmits(client, `held-`, held));
        await waitUntil(() => requestIds.every((id) => repliesById(client.frames).has(id)), "held");
        await proxy.cut();
        Deno.kill(worker.pid, "SIGCONT");
        outageDone = new Promise<void>((resolve) => setTimeout(resolve, 3_000))
          .then(() => proxy.restore());
      }
      const specs = Array.from(
        { length: Math.min(wave, total - sent) },
        (_, k) => specAt(sent + k),
      );
      requestIds.push(...await sendSubmits(client, `s${sent}-`, specs));
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    await outageDone;
    const { accepted, refused: unavailable } = await acceptedOrRefused(
      client,
      requestIds,
      "BLOB_UNAVAILABLE",
      90_000,
    );
    await waitUntil(
      () => accepted.every((taskId) => resultCounts(client.frames).has(taskId)),
      `a result for each of the ${accepted.length} accepted tasks`,
      90_000,
    );
    const counts = resultCounts(client.frames);
    const failed = client.frames.filter((f) => f.type === "result" && f.status !== "succeeded");
    const records = await fetchRecords(server.port, accepted);
    for (const taskId of accepted) {
      assert.equal(records.get(taskId)?.status, "succeeded", `record of ${taskId}`);
    }
    const duplicated = extraResults(counts);
    const lost = accepted.filter((id) => !counts.has(id)).length;
    await report({
      escenario: "almacén de objetos (S3) cortado 3 s",
      tareas: accepted.length,
      fallos: `S3 fuera 3 s con ${total} envíos en curso, la mitad de 300 KiB`,
      resultados: counts.size,
      duplicadosEntregados: duplicated,
      perdidas: lost,
      ms: Date.now() - started,
      notas: `${unavailable} BLOB_UNAVAILABLE`,
    });
    assert.deepEqual(failed, [], "no task failed for a missing object");
    assert.ok(
      worker.lines.some((l) => l.includes("no se pudieron guardar; se reintentará")),
      "an output was written during the outage, and written again later",
    );
    assert.equal(lost, 0);
    assert.equal(duplicated, 0);
    assert.ok(unavailable > 0, "submits during the outage were refused");
    assert.equal(accepted.length + unavailable, total + wave);
  },
});
