/**
 * End to end: the `workers` view flags workers that share a name, and forgets a worker as soon as it says it
 * stopped, instead of listing it for another 15 seconds.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { type Frame, RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

async function workersNow(client: RawClient, id: string): Promise<Frame[]> {
  await client.send({ type: "workers", id });
  return (await client.reply(id)).workers as Frame[];
}

Deno.test({
  name: "workers view flags duplicate names and drops a worker once it has stopped",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("workers");
    await using server = await startServer(queues);
    await using _first = await startWorker("gemelo", queues);
    await using second = await startWorker("gemelo", queues);
    await using client = await RawClient.connect(server.port);

    let workers: Frame[] = [];
    for (let i = 0; i < 50 && workers.length < 2; i++) {
      workers = await workersNow(client, `w${i}`);
      if (workers.length < 2) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(workers.length, 2);
    assert.ok(workers.every((w) => w.worker === "gemelo" && w.duplicate === true));
    await server.waitFor(/Hay más de un worker llamado «gemelo»/);

    const status = await second.stop();
    assert.equal(status.success, true);
    workers = await workersNow(client, "after");
    assert.equal(workers.length, 1, JSON.stringify(workers));
    assert.equal(workers[0]!.duplicate, undefined);
  },
});
