/**
 * End to end: limits that keep one client from holding a server's resources cheaply. Blank lines do not keep
 * an idle connection open; one connection may hold only so many open uploads; one address only so many
 * connections. Each breach gets its code, and a well-behaved client is served alongside.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

Deno.test({
  name: "server closes a connection that sends only blank lines with IDLE_TIMEOUT",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("idleblank");
    await using server = await startServer(queues, [
      "--store",
      "memory",
      "--idle-timeout-ms",
      "1500",
    ]);
    await using idler = await RawClient.connect(server.port);
    await using polite = await RawClient.connect(server.port);
    // Blank lines, far more often than the timeout, and nothing else; the polite client pings instead.
    let pings = 0;
    const blanks = setInterval(() => idler.sendRaw("\n").catch(() => {}), 100);
    const pinging = setInterval(
      () => polite.send({ type: "ping", id: `p${pings++}` }).catch(() => {}),
      300,
    );
    try {
      const goodbye = await idler.next((f) => f.type === "error" && f.id === null, 15_000);
      assert.equal(goodbye.code, "IDLE_TIMEOUT");
      await idler.closedByServer();
    } finally {
      clearInterval(blanks);
      clearInterval(pinging);
    }
    // The client that sends requests is served all along, and still open.
    await polite.send({ type: "ping", id: "last" });
    assert.equal((await polite.reply("last")).type, "pong");
    assert.equal(polite.frames.some((f) => f.type === "error"), false);
  },
});

Deno.test({
  name: "server refuses an upload past the open uploads of one connection with QUOTA_EXCEEDED",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("uploadcap");
    await using data = await tempDataDir();
    await using server = await startServer(queues, [
      "--store",
      "memory",
      "--data-dir",
      data.path,
      "--max-uploads-per-connection",
      "2",
    ]);
    await using hog = await RawClient.connect(server.port);
    await using polite = await RawClient.connect(server.port);
    const piece = btoa("x");
    for (const id of ["u1", "u2"]) {
      await hog.send({ type: "upload", id, data: piece });
      assert.equal((await hog.reply(id)).type, "uploading");
    }
    await hog.send({ type: "upload", id: "u3", data: piece });
    const refused = await hog.reply("u3");
    assert.equal(refused.type, "error");
    assert.equal(refused.code, "QUOTA_EXCEEDED");
    assert.match(refused.message as string, /subidas abiertas en esta conexión \(máximo 2\)/);

    // Finishing one frees its place; the connection stays usable.
    const first = (await hog.reply("u1")).uploadId as string;
    await hog.send({ type: "upload", id: "u1b", uploadId: first, data: piece, last: true });
    assert.equal((await hog.reply("u1b")).type, "uploaded");
    await hog.send({ type: "upload", id: "u4", data: piece });
    assert.equal((await hog.reply("u4")).type, "uploading");

    // Another connection uploads meanwhile.
    await polite.send({ type: "upload", id: "p1", data: btoa("hola"), last: true });
    assert.equal((await polite.reply("p1")).type, "uploaded");
  },
});

Deno.test({
  name:
    "server drops a connection past the cap of one address with OVERLOADED, and serves the rest",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("peraddr");
    await using server = await startServer(queues, [
      "--store",
      "memory",
      "--max-connections-per-address",
      "3",
    ]);
    await using stack = new AsyncDisposableStack();
    const held = [];
    for (let i = 0; i < 3; i++) held.push(stack.use(await RawClient.connect(server.port)));
    for (const [i, client] of held.entries()) {
      await client.send({ type: "ping", id: `p${i}` });
      assert.equal((await client.reply(`p${i}`)).type, "pong");
    }
    await using extra = await RawClient.connect(server.port);
    const goodbye = await extra.next((f) => f.type === "error" && f.id === null);
    assert.equal(goodbye.code, "OVERLOADED");
    assert.match(goodbye.message as string, /desde esta dirección \(máximo 3\)/);
    await extra.closedByServer();

    // One leaves: its place is free again.
    await held[0]!.close();
    let again: RawClient | undefined;
    for (let attempt = 0; attempt < 50 && again === undefined; attempt++) {
      const candidate = stack.use(await RawClient.connect(server.port));
      await candidate.send({ type: "ping", id: "again" });
      const reply = await candidate.next((f) => f.id === "again" || f.id === null);
      if (reply.type === "pong") again = candidate;
      else await new Promise((resolve) => setTimeout(resolve, 100)); // the server has not seen the close yet
    }
    assert.ok(again !== undefined, "a connection is served once another from the address left");
  },
});
