/** End to end: `welcome` tells the client the server's limits, so that it can adapt to them. */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

Deno.test({
  name: "welcome carries the server's limits as configured",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("welcome");
    await using server = await startServer(queues, [
      "--max-line-bytes",
      "65536",
      "--max-output-bytes",
      "1048576",
      "--rate-limit",
      "50",
      "--max-pending",
      "7",
      "--max-pending-bytes",
      "500000",
    ]);
    await using client = await RawClient.connect(server.port);
    await client.send({ type: "hello", id: "h", client: { name: "ana", kind: "web" } });
    const welcome = await client.reply("h");
    assert.equal(welcome.type, "welcome");
    const limits = welcome.limits as Record<string, number>;
    assert.equal(limits.maxLineBytes, 65536);
    assert.equal(limits.maxOutputBytes, 1048576);
    assert.equal(limits.rateLimit, 50);
    assert.equal(limits.maxPending, 7);
    assert.equal(limits.maxPendingBytes, 500000);
    assert.equal(limits.maxTasksLineBytes, 524288, "half the output cap, below 1 MiB");
    for (const key of ["maxJsonDepth", "rateBurst", "idleTimeoutMs", "maxUploadBytes"]) {
      assert.equal(typeof limits[key], "number", key);
    }
  },
});
