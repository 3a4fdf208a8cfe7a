/**
 * End to end: every error code of the protocol, each answered in Spanish with the connection still usable.
 */
import assert from "node:assert/strict";
import { dropPostgresSchema } from "../../server/stores/postgres.ts";
import { AMQP_URL, DATABASE_URL, needsPostgres, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";

const rabbit = await needsRabbit();
const postgres = await needsPostgres();

function isSpanishMessage(message: unknown): boolean {
  return typeof message === "string" && message.length > 5 && !/\bat\s+\S+:\d+/.test(message);
}

Deno.test({
  name: "server answers each bad request with its typed error and keeps the connection working",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("errors");
    await using server = await startServer(queues, ["--max-line-bytes", "4096"]);
    await using _worker = await startWorker("worker1", queues);
    await using client = await RawClient.connect(server.port);

    const cases: { send: string | Uint8Array; code: string; id: string | null }[] = [
      { send: "esto no es json\n", code: "INVALID_JSON", id: null },
      { send: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d, 0x0a]), code: "INVALID_JSON", id: null },
      { send: '{"type":"volar","id":"m1"}\n', code: "INVALID_MESSAGE", id: "m1" },
      { send: '{"type":"submit","id":"m2"}\n', code: "INVALID_MESSAGE", id: "m2" },
      { send: "[1,2,3]\n", code: "INVALID_MESSAGE", id: null },
      {
        send: '{"type":"submit","id":"u1","task":{"type":"teletransporte","payload":{}}}\n',
        code: "UNKNOWN_TASK_TYPE",
        id: "u1",
      },
      {
        send: '{"type":"submit","id":"p1","task":{"type":"numbers","payload":{"numbers":[]}}}\n',
        code: "INVALID_PAYLOAD",
        id: "p1",
      },
      {
        send: '{"type":"submit","id":"p2","task":{"type":"sleep","payload":{"ms":60001}}}\n',
        code: "INVALID_PAYLOAD",
        id: "p2",
      },
      {
        send: '{"type":"submit","id":"p3","task":{"type":"hash","payload":{"data":1}}}\n',
        code: "INVALID_PAYLOAD",
        id: "p3",
      },
      { send: "x".repeat(10_000) + "\n", code: "FRAME_TOO_LARGE", id: null },
      { send: "[".repeat(100) + "]".repeat(100) + "\n", code: "TOO_DEEP", id: null },
      { send: '{"type":"status","id":"n1","taskId":"no-existe"}\n', code: "NOT_FOUND", id: "n1" },
    ];
    for (const c of cases) {
      const before = client.frames.length;
      await client.sendRaw(c.send);
      const frame = await client.next((f) => client.frames.indexOf(f) >= before);
      assert.equal(frame.type, "error", JSON.stringify(frame));
      assert.equal(frame.code, c.code, JSON.stringify(frame));
      assert.equal(frame.id, c.id, JSON.stringify(frame));
      assert.ok(isSpanishMessage(frame.message), JSON.stringify(frame));
    }
    const payloadError = client.frames.find((f) => f.id === "p1")!;
    assert.match(String(payloadError.message), /numbers/);

    // The same connection still works, and so does a new one: nothing crashed.
    const taskId = await client.submit("ok", "numbers", { numbers: [1, 2, 3] });
    assert.equal((await client.result(taskId)).status, "succeeded");
    await using other = await RawClient.connect(server.port);
    await other.send({ type: "ping", id: "p" });
    assert.equal((await other.reply("p")).type, "pong");
    assert.equal(client.closedByPeer, false);
  },
});

Deno.test({
  name: "an oversized line split across many writes is refused once and the next line is served",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("big");
    await using server = await startServer(queues);
    await using client = await RawClient.connect(server.port);
    const chunk = "a".repeat(64 * 1024);
    for (let i = 0; i < 20; i++) await client.sendRaw(chunk); // 1.25 MiB, no newline yet
    await client.sendRaw('"\n{"type":"ping","id":"after"}\n');
    const error = await client.next((f) => f.type === "error");
    assert.equal(error.code, "FRAME_TOO_LARGE");
    assert.equal((await client.reply("after")).type, "pong");
    assert.equal(client.frames.filter((f) => f.type === "error").length, 1);
  },
});

Deno.test({
  name:
    "while the broker is unreachable a submit gets BROKER_UNAVAILABLE at once, and works again after",
  ...rabbit,
  async fn() {
    const target = new URL(AMQP_URL.replace(/^amqp:/, "http:"));
    await using proxy = new TcpProxy({
      hostname: target.hostname,
      port: Number(target.port || 5672),
    });
    proxy.restore();
    const url = `amqp://${target.username || "guest"}:${
      target.password || "guest"
    }@127.0.0.1:${proxy.port}`;
    await using queues = uniqueQueues("outage");
    await using server = await startServer(queues, ["--amqp-url", url]);
    await using _worker = await startWorker("worker1", queues);
    await using client = await RawClient.connect(server.port);
    const before = await client.submit("1", "echo", { message: "antes" });
    assert.equal((await client.result(before)).status, "succeeded");

    await proxy.cut();
    await server.waitFor(/Conexión con RabbitMQ perdida \(/);
    const t0 = performance.now();
    await client.send({
      type: "submit",
      id: "2",
      task: { type: "echo", payload: { message: "x" } },
    });
    const refused = await client.reply("2");
    assert.equal(refused.type, "error");
    assert.equal(refused.code, "BROKER_UNAVAILABLE");
    assert.ok(isSpanishMessage(refused.message));
    assert.ok(performance.now() - t0 < 5_000, "answered at once, not after a hang");

    proxy.restore();
    await server.waitFor(/^Reconectado a RabbitMQ$/, 20_000);
    const after = await client.submit("3", "echo", { message: "después" });
    assert.deepEqual((await client.result(after)).output, { message: "después" });
  },
});

Deno.test({
  name:
    "a connection with maxPending requests in progress gets OVERLOADED for the next, of any type, and carries on",
  // PostgreSQL answers over the network, so queries stay in progress while the server reads the burst.
  ignore: rabbit.ignore || postgres.ignore,
  async fn() {
    const maxPending = 5;
    await using queues = uniqueQueues("pending");
    const schema = `pending_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
    await using _schema = {
      [Symbol.asyncDispose]: () => dropPostgresSchema(DATABASE_URL, schema),
    };
    await using server = await startServer(queues, [
      "--max-pending",
      String(maxPending),
      "--store",
      "postgres",
      "--database-url",
      DATABASE_URL,
      "--db-schema",
      schema,
    ]);
    await using _worker = await startWorker("worker1", queues, ["--quiet"]);
    await using client = await RawClient.connect(server.port);
    const lines = (ids: string[], frame: (id: string, i: number) => unknown) =>
      ids.map((id, i) => JSON.stringify(frame(id, i)) + "\n").join("");
    /** Sends the lines in one write, so that the server reads them at once; returns the replies by id. */
    const burst = async (prefix: string, frame: (id: string, i: number) => unknown) => {
      const ids = Array.from({ length: 40 }, (_, i) => `${prefix}${i}`);
      await client.sendRaw(lines(ids, frame));
      return await Promise.all(ids.map((id) => client.reply(id)));
    };
    const overloaded = (replies: { type: string; code?: unknown; message?: unknown }[]) => {
      const refused = replies.filter((r) => r.type === "error");
      for (const r of refused) {
        assert.equal(r.code, "OVERLOADED");
        assert.ok(isSpanishMessage(r.message));
        assert.match(String(r.message), new RegExp(`máximo ${maxPending}`));
      }
      return refused.length;
    };

    const submits = await burst("s", (id, i) => ({
      type: "submit",
      id,
      task: { type: "echo", payload: { message: i } },
    }));
    const accepted = submits.filter((r) => r.type === "accepted").map((r) => r.taskId as string);
    const refusedSubmits = overloaded(submits);
    assert.ok(accepted.length >= maxPending, `${accepted.length} accepted`);
    assert.ok(refusedSubmits >= 1, "some submits beyond maxPending were refused");
    assert.equal(accepted.length + refusedSubmits, 40);
    // Every accepted task still gets its result.
    await Promise.all(accepted.map((taskId) => client.result(taskId, 30_000)));

    // Queries hold a slot too while the store answers them (a `status` per line, all read at once)...
    const statuses = await burst("q", (id, i) => ({
      type: "status",
      id,
      taskId: accepted[i % accepted.length],
    }));
    assert.ok(overloaded(statuses) >= 1, "some status queries beyond maxPending were refused");
    for (const r of statuses.filter((r) => r.type !== "error")) assert.equal(r.type, "task");

    // ...but pings are answered on the spot and never refused.
    const pongs = await burst("p", (id) => ({ type: "ping", id }));
    assert.ok(
      pongs.every((r) => r.type === "pong"),
      JSON.stringify(pongs.find((r) => r.type !== "pong")),
    );

    // The connection carries on.
    assert.match(await client.submit("last", "echo", { message: "sigo" }), /^[0-9a-f-]{36}$/);
  },
});

Deno.test({
  name:
    "an upload into a broken blobs folder is answered BLOB_UNAVAILABLE and the connection carries on",
  ...rabbit,
  async fn() {
    await using data = await tempDataDir();
    await using queues = uniqueQueues("blobs");
    await using server = await startServer(queues, ["--data-dir", data.path]);
    await using client = await RawClient.connect(server.port);
    // The tests run as root, which ignores permission bits: a file where the folder was fails as ENOTDIR.
    await Deno.remove(`${data.path}/blobs`, { recursive: true });
    await Deno.writeTextFile(`${data.path}/blobs`, "no soy una carpeta");
    await client.send({ type: "upload", id: "up1", data: btoa("hola"), last: true });
    const reply = await client.reply("up1");
    assert.equal(reply.type, "error", JSON.stringify(reply));
    assert.equal(reply.code, "BLOB_UNAVAILABLE", JSON.stringify(reply));
    assert.ok(isSpanishMessage(reply.message), JSON.stringify(reply));
    assert.ok(!String(reply.message).includes(data.path), "the folder's path stays in the logs");
    await client.send({ type: "ping", id: "p" });
    assert.equal((await client.reply("p")).type, "pong");
  },
});
