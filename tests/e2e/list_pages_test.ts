/**
 * End to end: a `list` page never builds a reply larger than the server itself would send, however large the
 * listed tasks' outputs are: outputs are left out of the items (with their size), and pages are cut by
 * bytes, with a cursor that goes on where the cut was.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { type Frame, RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();
const TASKS = 12;
const OUTPUT_CHARS = 200_000;

Deno.test({
  name:
    "server answers a list of tasks with large outputs with a small page that carries no output",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("listbig");
    // 12 outputs of 200,000 characters would make a 2.4 MB `tasks` line, over this cap.
    await using server = await startServer(queues, [
      "--store",
      "memory",
      "--max-output-bytes",
      String(2 * 1024 * 1024),
    ]);
    await using _worker = await startWorker("worker1", queues);
    await using client = await RawClient.connect(server.port);
    const big = "x".repeat(OUTPUT_CHARS);
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) {
      ids.push(await client.submit(`s${i}`, "echo", { message: big }));
    }
    for (const taskId of ids) {
      assert.equal((await client.result(taskId, 30_000)).status, "succeeded");
    }
    const smallId = await client.submit("small", "echo", { message: "hola" });
    assert.equal((await client.result(smallId, 30_000)).status, "succeeded");

    const seen: Frame[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const id: string = `l${pages}`;
      await client.send({ type: "list", id, limit: 90, ...(cursor === null ? {} : { cursor }) });
      const page = await client.reply(id);
      assert.equal(page.type, "tasks", JSON.stringify(page).slice(0, 300));
      // 13 records of about 500 bytes each, not 2.4 MB of outputs.
      const bytes = new TextEncoder().encode(JSON.stringify(page)).length;
      assert.ok(bytes < 16 * 1024, `a page of ${bytes} bytes`);
      seen.push(...page.items as Frame[]);
      cursor = page.nextCursor as string | null;
      pages++;
    } while (cursor !== null && pages < 20);
    assert.equal(client.closedByPeer, false);
    assert.equal(seen.length, TASKS + 1, "every task is listed once, across pages");
    assert.equal(new Set(seen.map((t) => t.taskId)).size, TASKS + 1);
    for (const item of seen.filter((t) => ids.includes(t.taskId as string))) {
      assert.equal(item.output, undefined);
      assert.equal(item.outputOmitted, true);
      assert.equal(item.outputBytes, JSON.stringify({ message: big }).length);
    }
    // Small outputs are left out too: the list carries none.
    const small = seen.find((t) => t.taskId === smallId);
    assert.equal(small?.output, undefined);
    assert.equal(small?.outputOmitted, true);
    assert.equal(small?.outputBytes, JSON.stringify({ message: "hola" }).length);

    // The whole output is still there for `status`.
    await client.send({ type: "status", id: "st", taskId: ids[0] });
    assert.deepEqual((await client.reply("st")).output, { message: big });
  },
});

Deno.test({
  name: "server ends a list page early by bytes and its cursor goes on where the page ended",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("listcut");
    // Half of this cap, less the envelope's room, holds about a dozen records: 40 need several pages.
    await using server = await startServer(queues, [
      "--store",
      "memory",
      "--max-output-bytes",
      "16384",
    ]);
    await using client = await RawClient.connect(server.port);
    await client.send({
      type: "hello",
      id: "h",
      client: { name: "n".repeat(100), kind: "cli" },
    });
    await client.reply("h");
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      ids.push(await client.submit(`s${i}`, "echo", { message: `${i}` }));
    }

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const id: string = `l${pages}`;
      await client.send({ type: "list", id, limit: 90, ...(cursor === null ? {} : { cursor }) });
      const page = await client.reply(id);
      assert.equal(page.type, "tasks");
      const items = page.items as Frame[];
      assert.ok(items.length >= 1 && items.length < 40, `page of ${items.length} items`);
      for (const item of items) seen.push(item.taskId as string);
      cursor = page.nextCursor as string | null;
      pages++;
    } while (cursor !== null && pages < 20);
    assert.ok(pages > 1, `${pages} pages`);
    assert.deepEqual([...seen].sort(), [...ids].sort(), "each task once, across pages");
  },
});
