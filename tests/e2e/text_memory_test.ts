/**
 * End to end: a `text` task on an uploaded file cannot take its worker down. A text over the type's input
 * limit is refused at submit; one within it runs in a thread with a memory cap (`--memoria-tarea-mb`). When
 * it reaches the cap the task fails, typed (`MEMORY_EXCEEDED`, or `TIMEOUT` when the runtime stalls the
 * thread at its cap instead of reporting it: its timeout then ends the thread), the worker's peak memory
 * stays bounded, and the worker goes on.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { MAX_TEXT_BYTES } from "../../shared/tasks/text.ts";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

/** Bytes of one upload piece: 512 KiB, whose base64 and envelope fit a 1 MiB line. */
const PIECE = 512 * 1024;
/** The worker's thread heap cap in this test, in MiB. */
const THREAD_MB = 32;
/** The peak resident memory the worker may reach, in MiB: far below 30 times the text it processed. */
const WORKER_PEAK_MB = 450;

/** Uploads `bytes` in pieces and returns the ref of the stored file. */
async function uploadFile(client: RawClient, label: string, bytes: Uint8Array): Promise<string> {
  let uploadId: string | undefined;
  for (let offset = 0, i = 0; offset < bytes.length; offset += PIECE, i++) {
    const last = offset + PIECE >= bytes.length;
    const id = `${label}-${i}`;
    await client.send({
      type: "upload",
      id,
      ...(uploadId === undefined ? {} : { uploadId }),
      data: Buffer.from(bytes.subarray(offset, offset + PIECE)).toString("base64"),
      last,
    });
    const reply = await client.reply(id, 30_000);
    if (last) {
      assert.equal(reply.type, "uploaded", JSON.stringify(reply));
      return reply.ref as string;
    }
    assert.equal(reply.type, "uploading", JSON.stringify(reply));
    uploadId = reply.uploadId as string;
  }
  throw new Error("Cannot upload an empty file");
}

/** Words of a few letters, one grapheme each: the costliest text per byte to reverse. */
function words(bytes: number): Uint8Array {
  return new TextEncoder().encode("abc ".repeat(Math.ceil(bytes / 4)).slice(0, bytes));
}

/** The peak resident memory of a process (`VmHWM`), in MiB; read by `cat`: Deno lets only `--allow-all` read `/proc`. */
async function peakMiB(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/status`] }).output();
  const status = new TextDecoder().decode(stdout);
  const kb = Number(status.match(/^VmHWM:\s+(\d+) kB$/m)?.[1]);
  assert.ok(Number.isFinite(kb), "VmHWM is readable");
  return kb / 1024;
}

Deno.test({
  name: "an oversized text upload is refused at submit, and a large one fails in its capped thread",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("textmem");
    await using data = await tempDataDir();
    await using server = await startServer(queues, ["--store", "memory", "--data-dir", data.path]);
    await using worker = await startWorker("w1", queues, [
      ...["--data-dir", data.path, "--memoria-tarea-mb", String(THREAD_MB)],
    ]);
    await using client = await RawClient.connect(server.port);

    // Over the type's input limit: refused before anything is queued.
    const tooBig = await uploadFile(client, "big", words(MAX_TEXT_BYTES + 1024));
    await client.send({
      type: "submit",
      id: "s-big",
      task: { type: "text", payload: {}, file: { ref: tooBig, field: "text" } },
    });
    const refused = await client.reply("s-big");
    assert.equal(refused.code, "INVALID_PAYLOAD", JSON.stringify(refused));

    // Within the limit, but more than a 32 MiB heap can process: it fails in its thread, typed.
    const large = await uploadFile(client, "large", words(3 * 1024 * 1024));
    await client.send({
      type: "submit",
      id: "s-large",
      task: { type: "text", payload: {}, file: { ref: large, field: "text" } },
      // Inline, on the worker's own loop, it would take about a second and succeed.
      options: { timeoutMs: 5_000, maxAttempts: 1 },
    });
    const accepted = await client.reply("s-large");
    assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
    const failed = await client.result(accepted.taskId as string, 60_000);
    assert.equal(failed.status, "failed", JSON.stringify(failed).slice(0, 300));
    const { code } = failed.error as { code: string };
    assert.ok(code === "MEMORY_EXCEEDED" || code === "TIMEOUT", `failed with ${code}`);

    const peak = await peakMiB(worker.pid);
    assert.ok(peak < WORKER_PEAK_MB, `the worker peaked at ${Math.round(peak)} MiB`);

    // The same worker goes on: a small text, inline, and one long enough for a thread.
    const small = await client.submit("s-small", "text", { text: "hola mundo" });
    const done = await client.result(small, 30_000);
    assert.equal(done.status, "succeeded");
    assert.equal((done.output as { words: number }).words, 2);
    const threaded = await client.submit("s-thread", "text", { text: "ab ".repeat(30_000) });
    assert.equal((await client.result(threaded, 30_000)).status, "succeeded");
  },
});
