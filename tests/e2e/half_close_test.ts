/**
 * End to end: a client that sends its requests and at once shuts down its write side (`printf … | nc`) still
 * gets every complete line answered, submits included, before the server closes the connection.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

Deno.test({
  name: "server answers every line of a half-closed connection, then closes it",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("halfclose");
    await using server = await startServer(queues);

    await using ping = await RawClient.connect(server.port);
    await ping.sendRaw('{"type":"ping","id":"hc"}\n');
    await ping.closeWrite();
    assert.equal((await ping.reply("hc")).type, "pong");
    await ping.closedByServer();

    await using many = await RawClient.connect(server.port);
    await many.sendRaw(
      '{"type":"submit","id":"s1","task":{"type":"echo","payload":{"message":1}}}\n' +
        '{"type":"status","id":"st","taskId":"no-existe"}\n' +
        '{"type":"ping","id":"p"}\n' +
        '{"type":"submit","id":"s2","task":{"type":"echo","payload":{"message":2}}}\n' +
        '{"type":"ping","id":"sin-fin"}',
    );
    await many.closeWrite();
    await many.closedByServer();
    const byId = new Map(many.frames.map((f) => [f.id, f.type]));
    assert.equal(byId.get("s1"), "accepted");
    assert.equal(byId.get("s2"), "accepted");
    assert.equal(byId.get("st"), "error");
    assert.equal(byId.get("p"), "pong");
    assert.equal(byId.has("sin-fin"), false, "a line without its newline is not a frame");
  },
});
