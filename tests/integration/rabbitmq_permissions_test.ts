/**
 * Integration: the per-role RabbitMQ users of compose.yaml (deploy/rabbitmq/definitions.template.json),
 * created in a vhost of their own on the real RabbitMQ with `rabbitmqctl`, let a server and a worker run a
 * task end to end, and refuse the worker the result queue, the servers' reply queues and the dead-letter
 * queue.
 */
import assert from "node:assert/strict";
import amqp from "amqplib";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

const definitions = JSON.parse(
  await Deno.readTextFile(
    new URL("../../deploy/rabbitmq/definitions.template.json", import.meta.url),
  ),
) as { permissions: { user: string; configure: string; write: string; read: string }[] };

async function rabbitmqctl(...args: string[]): Promise<Deno.CommandOutput | undefined> {
  try {
    return await new Deno.Command("rabbitmqctl", { args, stdout: "piped", stderr: "piped" })
      .output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.PermissionDenied) {
      return undefined;
    }
    throw err;
  }
}

async function ctl(...args: string[]): Promise<void> {
  const out = await rabbitmqctl(...args);
  assert.equal(out?.code, 0, `rabbitmqctl ${args[0]}: ${new TextDecoder().decode(out?.stderr)}`);
}

// `rabbitmqctl` must reach the local node (same machine, readable Erlang cookie).
const probe = rabbit.ignore ? undefined : await rabbitmqctl("-q", "list_vhosts");
const canAdmin = probe?.code === 0;
if (!canAdmin && !rabbit.ignore && Deno.env.get("CI") === "true") {
  throw new Error("rabbitmqctl cannot reach the local RabbitMQ and CI=true");
}

/** A vhost with the two role users of the definitions file, removed on disposal. */
async function roleUsers(): Promise<
  { vhost: string; url: (role: "servidor" | "worker") => string } & AsyncDisposable
> {
  const id = crypto.randomUUID().slice(0, 8);
  const vhost = `colmena-perm-${id}`;
  const users = {
    servidor: { name: `colmena-servidor-${id}`, password: crypto.randomUUID() },
    worker: { name: `colmena-worker-${id}`, password: crypto.randomUUID() },
  };
  await ctl("add_vhost", vhost);
  for (const role of ["servidor", "worker"] as const) {
    const perms = definitions.permissions.find((p) => p.user === `colmena-${role}`)!;
    await ctl("add_user", users[role].name, users[role].password);
    await ctl(
      "set_permissions",
      "-p",
      vhost,
      users[role].name,
      perms.configure,
      perms.write,
      perms.read,
    );
  }
  const host = new URL(AMQP_URL).host;
  return {
    vhost,
    url: (role) =>
      `amqp://${users[role].name}:${users[role].password}@${host}/${encodeURIComponent(vhost)}`,
    async [Symbol.asyncDispose]() {
      await rabbitmqctl("delete_vhost", vhost);
      for (const role of ["servidor", "worker"] as const) {
        await rabbitmqctl("delete_user", users[role].name);
      }
    },
  };
}

/** Whether `url` may consume `queue`: RabbitMQ answers ACCESS_REFUSED (403) otherwise. */
async function mayConsume(url: string, queue: string): Promise<boolean> {
  const conn = await amqp.connect(url);
  conn.on("error", () => {});
  try {
    const ch = await conn.createChannel();
    ch.on("error", () => {});
    try {
      const { consumerTag } = await ch.consume(queue, () => {});
      await ch.cancel(consumerTag);
      await ch.close();
      return true;
    } catch (err) {
      assert.match(String(err), /ACCESS_REFUSED|403/);
      return false;
    }
  } finally {
    await conn.close().catch(() => {});
  }
}

Deno.test({
  name:
    "the per-role RabbitMQ users run a task end to end, and the worker may not consume results nor the dead-letter queue",
  ignore: rabbit.ignore || !canAdmin,
  async fn() {
    await using users = await roleUsers();
    const queues = { taskQueue: "task_queue", resultQueue: "result_queue" };
    const key = { COLMENA_SIGNING_KEY: crypto.randomUUID() + crypto.randomUUID() };
    await using server = await startServer(
      queues,
      ["--store", "memory", "--server-id", "srv-perm"],
      {
        AMQP_URL: users.url("servidor"),
        ...key,
      },
    );
    await using _worker = await startWorker("w-perm", queues, [], {
      AMQP_URL: users.url("worker"),
      ...key,
    });
    await using client = await RawClient.connect(server.port);
    await client.send({ type: "hello", id: "h", client: { name: "perm", kind: "cli" } });
    await client.reply("h");
    const taskId = await client.submit("1", "echo", { message: "con permisos" });
    assert.deepEqual((await client.result(taskId)).output, { message: "con permisos" });

    assert.equal(await mayConsume(users.url("worker"), "result_queue"), false);
    assert.equal(await mayConsume(users.url("worker"), "task_queue.dlq"), false);
    assert.equal(await mayConsume(users.url("worker"), "result_queue.server.srv-perm"), false);
    assert.equal(await mayConsume(users.url("servidor"), "task_queue.dlq"), true);
    assert.equal(await mayConsume(users.url("worker"), "task_queue.echo"), true);
  },
});
