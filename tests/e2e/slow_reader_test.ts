/**
 * End to end: a client that never reads its replies is dropped with SLOW_CONSUMER instead of growing the
 * server's memory, and other clients are unaffected.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

Deno.test({
  name: "server drops a client that does not read once its unsent replies pass the cap",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("slow");
    await using server = await startServer(queues, ["--max-output-bytes", "65536"]);
    const slow = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const line = new TextEncoder().encode('{"type":"ping","id":"p"}\n'.repeat(10_000));
    // 400,000 pings ask for ~10 MiB of replies that are never read.
    let writeFailed = false;
    try {
      for (let i = 0; i < 40; i++) {
        let offset = 0;
        while (offset < line.length) offset += await slow.write(line.subarray(offset));
      }
    } catch {
      writeFailed = true; // the server closed the connection while we were still writing
    }
    await server.waitFor(/Se cierra la conexión \d+ .*SLOW_CONSUMER/, 20_000);
    slow.close();
    assert.ok(writeFailed || server.lines.some((l) => l.includes("SLOW_CONSUMER")));

    await using good = await RawClient.connect(server.port);
    await good.send({ type: "ping", id: "ok" });
    assert.equal((await good.reply("ok")).type, "pong");
  },
});

Deno.test({
  name: "server says goodbye with SLOW_CONSUMER before closing when its own replies fill the cap",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("slowbye");
    await using server = await startServer(queues, ["--max-output-bytes", "4096"]);
    await using client = await RawClient.connect(server.port);
    // 2,000 pongs (~50 KB) are queued before the server writes any of them.
    await client.sendRaw('{"type":"ping","id":"p"}\n'.repeat(2_000));
    const goodbye = await client.next((f) => f.type === "error");
    assert.equal(goodbye.code, "SLOW_CONSUMER");
    assert.equal(goodbye.id, null);
    await client.closedByServer();
    assert.equal(client.frames.at(-1), goodbye, "nothing follows the goodbye");
  },
});
