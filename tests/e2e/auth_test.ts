/**
 * End to end: identity, tokens and ownership, with the real server (started with a tokens file made by
 * `cliente token crear`), a real worker and RabbitMQ. Each attack gets its documented code, nothing of it
 * is recorded or published, and a well-behaved client is served alongside.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import { TaskClient } from "../../client/task_client.ts";
import { queueDepth } from "../../shared/adapters/rabbitmq/topology.ts";
import { typeQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { ColmenaError } from "../../shared/errors.ts";
import { hashToken, TOKEN_PATTERN } from "../../shared/tokens.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import {
  type ServerProcess,
  startServer,
  startWorker,
  tempDataDir,
  uniqueQueues,
} from "../_helpers/processes.ts";
import { type Frame, RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const decoder = new TextDecoder();

/** Runs `deno task -q cliente token …`, as an operator does. */
async function tokenCommand(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cliente", "token", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Runs `deno task -q cliente <args>` with `env`, as a user does. */
async function cliente(env: Record<string, string>, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cliente", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Creates a token with `cliente token crear` and returns it. */
async function createToken(file: string, name: string, ...flags: string[]): Promise<string> {
  const out = await tokenCommand("crear", name, ...flags, "--tokens", file);
  assert.equal(out.code, 0, out.stderr);
  return out.stdout.trim();
}

/** A raw connection that said `hello` with `token` and got `welcome`. */
async function connectAs(port: number, token: string, name = "raw"): Promise<RawClient> {
  const client = await RawClient.connect(port);
  await client.send({ type: "hello", id: "h", client: { name, kind: "cli" }, token });
  const welcome = await client.reply("h");
  assert.equal(welcome.type, "welcome", JSON.stringify(welcome));
  return client;
}

/** Asserts that the connection got `code` and was closed by the server. */
async function assertRefused(client: RawClient, code: string, id: string | null): Promise<Frame> {
  const error = await client.next((f) => f.type === "error");
  assert.equal(error.code, code, JSON.stringify(error));
  assert.equal(error.id, id);
  await client.closedByServer();
  return error;
}

/** Asserts an `error` reply with `code`, with the same message as `like` has (ids replaced). */
function assertSameError(reply: Frame, like: Frame, code: string, ids: [string, string]): void {
  assert.equal(reply.type, "error", JSON.stringify(reply));
  assert.equal(reply.code, code);
  assert.equal(like.code, code);
  assert.equal(
    String(reply.message).replace(ids[0], "ID"),
    String(like.message).replace(ids[1], "ID"),
  );
}

Deno.test("cliente token crear prints a token once and stores only its hash, in a file only its owner reads", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-tokens-" });
  try {
    const file = `${dir}/tokens.jsonl`;
    const created = await tokenCommand("crear", "ana", "--tipos", "echo,text", "--tokens", file);
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    assert.match(token, TOKEN_PATTERN, "stdout holds the token alone");
    assert.match(created.stderr, /no se vuelve a mostrar/);
    const text = await Deno.readTextFile(file);
    assert.equal(text.includes(token), false, "the token is not in the file");
    assert.equal(text.includes(token.slice(17)), false, "nor its secret part");
    assert.ok(text.includes(hashToken(token)), "its hash is");
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    const entry = JSON.parse(text);
    assert.equal(entry.name, "ana");
    assert.equal(entry.role, "cliente");
    assert.deepEqual(entry.types, ["echo", "text"]);

    const admin = await tokenCommand("crear", "root", "--admin", "--tokens", file);
    assert.notEqual(admin.stdout.trim(), token);
    const listed = await tokenCommand("listar", "--tokens", file);
    assert.match(listed.stdout, /ana {2}cliente {2}echo,text/);
    assert.match(listed.stdout, /root {2}admin {2}todos los tipos/);
    assert.equal(listed.stdout.includes(token), false);

    const revoked = await tokenCommand("revocar", "ana", "--tokens", file);
    assert.equal(revoked.code, 0, revoked.stderr);
    const after = await Deno.readTextFile(file);
    assert.equal(after.includes(hashToken(token)), false);
    assert.ok(after.includes('"root"'));
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);

    const bad = await tokenCommand("crear", "con espacios", "--tokens", file);
    assert.equal(bad.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a server bound off loopback without tokens refuses to start with exit 2, saying how to set --tokens", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "server.ts", "--host", "0.0.0.0", "--port", "0", "--sin-http"],
    cwd: ROOT,
    env: { NO_COLOR: "1", AMQP_URL },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  assert.equal(out.code, 2, text);
  assert.match(text, /fuera de loopback, sin autenticación/);
  assert.match(text, /--tokens/);
  assert.doesNotMatch(text, /Escuchando en/);
  assert.doesNotMatch(text, /^\s+at /m);
});

Deno.test({
  name: "--inseguro lets a server without tokens start off loopback, with a warning",
  ...rabbit,
  async fn() {
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: the server warns, then cannot bind it, so that
    // nothing listens beyond loopback during the test.
    await using data = await tempDataDir();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "server.ts",
        "--host",
        "192.0.2.1",
        "--port",
        "0",
        "--sin-http",
        "--store",
        "memory",
        "--data-dir",
        data.path,
        "--inseguro",
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1", AMQP_URL },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
    assert.notEqual(out.code, 2, text);
    assert.match(
      text,
      /AVISO: Modo inseguro: el servidor escucha en 192\.0\.2\.1 sin autenticación/,
    );
  },
});

Deno.test("a malformed tokens file stops the server with a Spanish message and exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "colmena-tokens-" });
  try {
    await Deno.writeTextFile(`${dir}/t.jsonl`, '{"id":"x","name":"ana"}\n');
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "server.ts", "--port", "0", "--sin-http", "--tokens", `${dir}/t.jsonl`],
      cwd: ROOT,
      env: { NO_COLOR: "1", AMQP_URL },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
    assert.equal(out.code, 2, text);
    assert.match(text, /ERROR: El fichero de tokens .*t\.jsonl, línea 1 no es una entrada válida/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A server with tokens for ana and bob (cliente), eco (cliente, echo only) and root (admin). */
interface Cast {
  readonly server: ServerProcess;
  readonly ana: string;
  readonly bob: string;
  readonly eco: string;
  readonly root: string;
}

async function withCast(
  label: string,
  fn: (
    cast: Cast,
    queues: { taskQueue: string; resultQueue: string },
    dataDir: string,
  ) => Promise<void>,
): Promise<void> {
  await using data = await tempDataDir();
  await using queues = uniqueQueues(label);
  const file = `${data.path}/tokens.jsonl`;
  const ana = await createToken(file, "ana");
  const bob = await createToken(file, "bob");
  const eco = await createToken(file, "eco", "--tipos", "echo");
  const root = await createToken(file, "root", "--admin");
  await using server = await startServer(queues, [
    "--data-dir",
    data.path,
    "--tokens",
    file,
    "--auth-timeout-ms",
    "1500",
    "--claim-check-bytes",
    "1024",
  ]);
  await fn({ server, ana, bob, eco, root }, queues, data.path);
}

Deno.test({
  name: "without a valid hello nothing is served: UNAUTHORIZED and a close, nothing published",
  ...rabbit,
  async fn() {
    await withCast("auth", async ({ server, ana, root }, queues) => {
      // A well-behaved client is served alongside every attack.
      await using good = new TaskClient({ port: server.port, token: ana, name: "buena" });
      await good.connect();

      await using noHello = await RawClient.connect(server.port);
      await noHello.send({
        type: "submit",
        id: "s",
        task: { type: "echo", payload: { message: "x" } },
      });
      await assertRefused(noHello, "UNAUTHORIZED", "s");

      await using noToken = await RawClient.connect(server.port);
      await noToken.send({ type: "hello", id: "h", client: { name: "ana", kind: "cli" } });
      await noToken.send({
        type: "submit",
        id: "s",
        task: { type: "echo", payload: { message: "x" } },
      });
      await assertRefused(noToken, "UNAUTHORIZED", "h");

      await using wrong = await RawClient.connect(server.port);
      await wrong.send({ type: "hello", id: "h", token: ana.slice(0, -2) + "xx" });
      await wrong.send({
        type: "submit",
        id: "s",
        task: { type: "echo", payload: { message: "x" } },
      });
      const refused = await assertRefused(wrong, "UNAUTHORIZED", "h");
      assert.equal(wrong.frames.length, 1, "the submit after it got nothing");
      assert.match(String(refused.message), /token no es válido/);

      // A long line before hello is refused at the small cap, not read up to the 1 MiB one.
      await using big = await RawClient.connect(server.port);
      await big.sendRaw(`{"type":"hello","id":"h","pad":"${"x".repeat(20 * 1024)}"}\n`);
      const tooLarge = await assertRefused(big, "FRAME_TOO_LARGE", null);
      assert.match(String(tooLarge.message), /antes del hello/);

      // The small cap is for the hello alone: a large request pipelined right after it is served.
      await using pipelined = await RawClient.connect(server.port);
      await pipelined.sendRaw(
        JSON.stringify({ type: "hello", id: "h", token: ana }) + "\n" +
          JSON.stringify({
            type: "submit",
            id: "big",
            task: { type: "echo", payload: { message: "y".repeat(100 * 1024) } },
          }) + "\n",
      );
      assert.equal((await pipelined.reply("h")).type, "welcome");
      const bigSubmit = await pipelined.reply("big");
      assert.equal(bigSubmit.type, "accepted", JSON.stringify(bigSubmit).slice(0, 300));

      // Silence past the authentication deadline.
      await using silent = await RawClient.connect(server.port);
      await assertRefused(silent, "UNAUTHORIZED", null);

      // Nothing of the attacks was recorded or published; the good client still is served.
      assert.equal(await queueDepth(AMQP_URL, typeQueue(queues.taskQueue, "echo")), 1);
      await using admin = await connectAs(server.port, root);
      await admin.send({ type: "list", id: "l", limit: 100 });
      const recorded = (await admin.reply("l")).items as { taskId: string }[];
      assert.deepEqual(recorded.map((t) => t.taskId), [bigSubmit.taskId], "only the good client's");
      const taskId = await good.submit("echo", { message: "hola" });
      assert.match(taskId, /^[0-9a-f-]{36}$/);

      // The command line sends COLMENA_TOKEN in its hello; without it, it says why it was refused.
      const port = String(server.port);
      const cliNoToken = await cliente({}, "ping", "--host", "127.0.0.1", "--port", port);
      assert.equal(cliNoToken.code, 1, cliNoToken.stderr);
      assert.match(cliNoToken.stderr, /token/);
      const ping = await cliente(
        { COLMENA_TOKEN: ana },
        "ping",
        "--host",
        "127.0.0.1",
        "--port",
        port,
      );
      assert.equal(ping.code, 0, ping.stderr);
      assert.match(ping.stdout, /Pong de/);
      assert.equal((ping.stdout + ping.stderr).includes(ana), false, "the token is never printed");
    });
  },
});

Deno.test({
  name:
    "another principal's tasks, outputs and uploads are NOT_FOUND; dlq, workers and other types FORBIDDEN",
  ...rabbit,
  async fn() {
    await withCast("own", async ({ server, ana, bob, eco, root }, queues, dataDir) => {
      await using _worker = await startWorker("w1", queues, [
        "--data-dir",
        dataDir,
        "--quiet",
        "--claim-check-bytes",
        "1024",
      ]);
      await using good = new TaskClient({ port: server.port, token: ana, name: "ana-lib" });
      await using a = await connectAs(server.port, ana, "ana-raw");
      await using b = await connectAs(server.port, bob, "ana-raw"); // bob says ana's client name
      const missing = crypto.randomUUID();

      // ana: a large output (stored as an object), and a long task still running.
      const big = await a.submit("e", "echo", { message: "x".repeat(4_000) });
      const bigResult = await a.result(big);
      assert.equal(bigResult.outputRef, `tasks/${big}/output`);
      const slow = await a.submit("s", "sleep", { ms: 60_000 });

      // status: another's task is answered exactly as a missing one.
      await b.send({ type: "status", id: "st1", taskId: big });
      await b.send({ type: "status", id: "st2", taskId: missing });
      await b.send({ type: "status", id: "st3", taskId: big.slice(0, 8) });
      assertSameError(await b.reply("st1"), await b.reply("st2"), "NOT_FOUND", [big, missing]);
      assert.equal((await b.reply("st3")).code, "NOT_FOUND");
      await a.send({ type: "status", id: "st4", taskId: big });
      assert.equal((await a.reply("st4")).type, "task");

      // list: only one's own.
      await b.send({ type: "list", id: "l1", limit: 100 });
      assert.deepEqual((await b.reply("l1")).items, []);
      await a.send({ type: "list", id: "l2", limit: 100 });
      const own = (await a.reply("l2")).items as { taskId: string; owner: string }[];
      assert.deepEqual(own.map((t) => t.taskId).sort(), [big, slow].sort());
      assert.ok(own.every((t) => t.owner === "ana"));

      // watch: another's task is missing.
      await b.send({ type: "watch", id: "w1", taskIds: [slow, big, slow.slice(0, 8)] });
      const watching = await b.reply("w1");
      assert.deepEqual(watching.taskIds, []);
      assert.deepEqual(watching.missing, [slow, big, slow.slice(0, 8)]);

      // cancel: NOT_FOUND, and ana's task goes on.
      await b.send({ type: "cancel", id: "c1", taskId: slow });
      await b.send({ type: "cancel", id: "c2", taskId: missing });
      assertSameError(await b.reply("c1"), await b.reply("c2"), "NOT_FOUND", [slow, missing]);
      await a.send({ type: "status", id: "st5", taskId: slow });
      assert.notEqual((await a.reply("st5")).status, "cancelled");

      // download: another's output is NOT_FOUND, like one that does not exist.
      const ref = `tasks/${big}/output`;
      await b.send({ type: "download", id: "d1", ref });
      await b.send({ type: "download", id: "d2", ref: `tasks/${missing}/output` });
      assertSameError(await b.reply("d1"), await b.reply("d2"), "NOT_FOUND", [big, missing]);
      await a.send({ type: "download", id: "d3", ref });
      assert.equal((await a.reply("d3")).type, "chunk");

      // file.ref: bob cannot submit with ana's upload.
      const data = Buffer.from("hola mundo desde un fichero").toString("base64");
      await a.send({ type: "upload", id: "u", data, last: true });
      const uploaded = await a.reply("u");
      assert.equal(uploaded.type, "uploaded", JSON.stringify(uploaded));
      const fileTask = { type: "text", payload: {}, file: { ref: uploaded.ref, field: "text" } };
      await b.send({ type: "submit", id: "f1", task: fileTask });
      const stolen = await b.reply("f1");
      assert.equal(stolen.code, "NOT_FOUND", JSON.stringify(stolen));
      assert.equal(stolen.message, `No existe ningún objeto con la clave "${uploaded.ref}"`);
      await a.send({ type: "submit", id: "f2", task: fileTask });
      assert.equal((await a.reply("f2")).type, "accepted");

      // dlq and workers: admin only.
      for (const c of [a, b]) {
        await c.send({ type: "dlq", id: "q", action: "list", limit: 10 });
        await c.send({ type: "workers", id: "k" });
        assert.equal((await c.reply("q")).code, "FORBIDDEN");
        assert.equal((await c.reply("k")).code, "FORBIDDEN");
      }
      await using admin = await connectAs(server.port, root);
      await admin.send({ type: "workers", id: "k" });
      assert.equal((await admin.reply("k")).type, "workers");
      await admin.send({ type: "dlq", id: "q", action: "list", limit: 10 });
      assert.equal((await admin.reply("q")).type, "dlq");
      // The admin sees every task, with its owner.
      await admin.send({ type: "status", id: "st", taskId: big });
      assert.equal((await admin.reply("st")).owner, "ana");

      // A token limited to some types submits only those.
      await using e = await connectAs(server.port, eco);
      await e.send({ type: "submit", id: "t", task: { type: "text", payload: { text: "hola" } } });
      const forbidden = await e.reply("t");
      assert.equal(forbidden.code, "FORBIDDEN", JSON.stringify(forbidden));
      assert.equal(await queueDepth(AMQP_URL, typeQueue(queues.taskQueue, "text")), 0);
      const echoed = await e.submit("t2", "echo", { message: "sí" });
      assert.equal((await e.result(echoed)).status, "succeeded");

      // The library client was served all along, and the TaskClient surfaces FORBIDDEN as a code.
      assert.equal((await good.run("echo", { message: "ok" })).message, "ok");
      await assert.rejects(
        good.workers(),
        (err) => err instanceof ColmenaError && err.code === "FORBIDDEN",
      );
    });
  },
});

Deno.test({
  name: "an idempotency key another principal used first does not capture the victim's submit",
  ...rabbit,
  async fn() {
    await withCast("idem", async ({ server, ana, bob }, queues, dataDir) => {
      await using _worker = await startWorker("w1", queues, ["--data-dir", dataDir, "--quiet"]);
      await using attacker = await connectAs(server.port, bob, "ana");
      await using victim = await connectAs(server.port, ana, "ana");
      const key = `k-${crypto.randomUUID()}`;
      const squat = await attacker.submit("s", "echo", { message: "del atacante" }, {
        idempotencyKey: key,
      });
      await victim.send({
        type: "submit",
        id: "v",
        task: { type: "echo", payload: { message: "de ana" } },
        options: { idempotencyKey: key },
      });
      const accepted = await victim.reply("v");
      assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
      assert.notEqual(accepted.taskId, squat);
      assert.equal(accepted.duplicate, undefined);
      const result = await victim.result(accepted.taskId as string);
      assert.deepEqual(result.output, { message: "de ana" });
      // The victim's own repeat still gets her first task.
      await victim.send({
        type: "submit",
        id: "v2",
        task: { type: "echo", payload: { message: "de ana" } },
        options: { idempotencyKey: key },
      });
      const repeat = await victim.reply("v2");
      assert.equal(repeat.taskId, accepted.taskId);
      assert.equal(repeat.duplicate, true);
    });
  },
});

Deno.test({
  name:
    "every connection of the owner awaiting a task gets its result; another principal cannot watch it",
  ...rabbit,
  async fn() {
    await withCast("watch", async ({ server, ana, bob }, queues, dataDir) => {
      await using submitter = await connectAs(server.port, ana);
      await using watcher1 = await connectAs(server.port, ana);
      await using watcher2 = await connectAs(server.port, ana);
      await using thief = await connectAs(server.port, bob);
      // No worker yet: the task waits in its queue while everyone watches it.
      const taskId = await submitter.submit("s", "echo", { message: "para todos" });
      for (const [i, c] of [watcher1, watcher2].entries()) {
        await c.send({ type: "watch", id: `w${i}`, taskIds: [taskId] });
        assert.deepEqual((await c.reply(`w${i}`)).taskIds, [taskId]);
      }
      await thief.send({ type: "watch", id: "w", taskIds: [taskId] });
      assert.deepEqual((await thief.reply("w")).missing, [taskId]);

      await using _worker = await startWorker("w1", queues, ["--data-dir", dataDir, "--quiet"]);
      for (const c of [submitter, watcher1, watcher2]) {
        const result = await c.result(taskId, 30_000);
        assert.deepEqual(result.output, { message: "para todos" });
      }
      assert.equal(thief.frames.some((f) => f.type === "result"), false);
    });
  },
});
