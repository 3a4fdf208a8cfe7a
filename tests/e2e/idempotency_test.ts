/**
 * End to end: a submit that repeats an idempotency key gets the first task and changes nothing of it, with
 * real server and worker processes, the real RabbitMQ, SQLite and a folder object store.
 *
 * @module
 */
import assert from "node:assert/strict";
import { openFolderBlobStore } from "../../shared/adapters/fs_blob.ts";
import { PAYLOAD_KEY, payloadKey } from "../../shared/blob_keys.ts";
import type { BlobStore } from "../../shared/ports.ts";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

async function payloadObjects(blobs: BlobStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const { key } of blobs.list("tasks/")) if (PAYLOAD_KEY.test(key)) keys.push(key);
  return keys.sort();
}

Deno.test({
  name:
    "a repeated idempotency key runs the first task as submitted and keeps no object of its own",
  ...rabbit,
  async fn() {
    await using data = await tempDataDir();
    await using queues = uniqueQueues("idem");
    const dataArgs = ["--data-dir", data.path];
    await using server = await startServer(queues, [
      ...dataArgs,
      "--claim-check-bytes",
      "2048",
    ]);
    await using _worker = await startWorker("w1", queues, [...dataArgs, "--concurrency", "1"]);
    await using client = await RawClient.connect(server.port);
    const blobs = await openFolderBlobStore(`${data.path}/blobs`);
    try {
      await client.send({ type: "hello", id: "h", client: { name: "idem", kind: "cli" } });
      await client.reply("h");
      // The only worker slot is busy, so the echoes wait in the queue while they are repeated.
      const busy = await client.submit("b", "sleep", { ms: 3_000 });

      const key = `k-${crypto.randomUUID()}`;
      const first = await client.submit("e1", "echo", { message: "first" }, {
        idempotencyKey: key,
      });
      await client.send({
        type: "submit",
        id: "e2",
        task: { type: "echo", payload: { message: "second" } },
        options: { idempotencyKey: key, priority: 9 },
      });
      const repeat = await client.reply("e2");
      assert.equal(repeat.type, "accepted", JSON.stringify(repeat));
      assert.equal(repeat.taskId, first);
      assert.equal(repeat.duplicate, true);
      assert.equal(repeat.payloadDiffers, true);

      const large = (text: string) => ({ message: text.repeat(5_000) });
      const bigKey = `k-${crypto.randomUUID()}`;
      const bigFirst = await client.submit("l1", "echo", large("a"), { idempotencyKey: bigKey });
      assert.deepEqual(await payloadObjects(blobs), [payloadKey(bigFirst)]);
      await client.send({
        type: "submit",
        id: "l2",
        task: { type: "echo", payload: large("b") },
        options: { idempotencyKey: bigKey },
      });
      const bigRepeat = await client.reply("l2");
      assert.equal(bigRepeat.taskId, bigFirst, JSON.stringify(bigRepeat));
      assert.equal(bigRepeat.payloadDiffers, true);
      await client.send({
        type: "submit",
        id: "l3",
        task: { type: "echo", payload: large("a") },
        options: { idempotencyKey: bigKey },
      });
      const same = await client.reply("l3");
      assert.equal(same.taskId, bigFirst, JSON.stringify(same));
      assert.equal(same.duplicate, true);
      assert.equal(same.payloadDiffers, false);
      assert.deepEqual(await payloadObjects(blobs), [payloadKey(bigFirst)]);

      assert.equal((await client.result(busy)).status, "succeeded");
      const result = await client.result(first);
      assert.equal(result.status, "succeeded");
      assert.deepEqual(result.output, { message: "first" });
      const bigResult = await client.result(bigFirst);
      assert.equal(bigResult.status, "succeeded");

      await client.send({ type: "status", id: "s", taskId: first });
      const view = await client.reply("s");
      assert.equal(view.priority, 0);
      assert.deepEqual(await payloadObjects(blobs), [payloadKey(bigFirst)]);
    } finally {
      await blobs.close();
    }
  },
});
