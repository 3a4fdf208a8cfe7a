/**
 * End to end: a client that sends more request bytes than `maxPendingBytes` before any is answered is read
 * more slowly (the server stops reading it meanwhile), never refused: every submit of the burst is accepted
 * and runs.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { resultCounts, waitUntil } from "../_helpers/chaos.ts";

const rabbit = await needsRabbit();

Deno.test({
  name:
    "a burst of submits far over maxPendingBytes is read at the server's pace and every one is accepted and run",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("inbp");
    // 256 KiB of unanswered requests at most; the burst is 200 × 32 KiB = 6.4 MB in one write.
    await using server = await startServer(queues, ["--max-pending-bytes", String(256 * 1024)]);
    await using client = await RawClient.connect(server.port);
    const message = "m".repeat(32 * 1024);
    const tasks = 200;
    const burst = Array.from(
      { length: tasks },
      (_, i) =>
        JSON.stringify({
          type: "submit",
          id: `s${i}`,
          task: { type: "echo", payload: { message } },
        }),
    ).join("\n") + "\n";
    await client.sendRaw(new TextEncoder().encode(burst));
    await waitUntil(
      () => client.frames.filter((f) => f.type !== "result").length >= tasks,
      "every reply",
    );
    const replies = client.frames.filter((f) => f.type !== "result");
    assert.deepEqual(replies.filter((f) => f.type !== "accepted"), [], "no submit was refused");
    await using _worker = await startWorker("w1", queues, ["--quiet"]);
    await waitUntil(() => resultCounts(client.frames).size >= tasks, "every result", 60_000);
    assert.equal(client.closedByPeer, false);
  },
});
