/**
 * End to end: secrets are never echoed. Canary values in AMQP_URL, in DATABASE_URL (password and query), in
 * the S3 secret and in the signing key are absent from every line a real server and worker print, at start,
 * on a failed start and in replies, and from what `deno task` prints when they come from the environment.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { dropPostgresSchema } from "../../server/stores/postgres.ts";
import {
  AMQP_URL,
  DATABASE_URL,
  needsPostgres,
  needsRabbit,
  needsS3,
  s3Target,
} from "../_helpers/services.ts";
import { RoleProcess, startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();
const postgres = await needsPostgres();
const s3 = await needsS3();

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const CANARY = {
  dbPassword: "CANARIO-pg-clave-7f3a",
  dbQuery: "CANARIO-pg-consulta-91bc",
  s3Secret: "CANARIO-s3-secreto-55de",
  signingKey: "CANARIO-firma-0123456789-abcdefghijklmnopq",
  amqpPassword: "CANARIO-Wr0ngP@ss",
} as const;

function assertNoCanary(lines: readonly string[], what: string): void {
  for (const line of lines) {
    for (const [name, canary] of Object.entries(CANARY)) {
      for (
        const form of [canary, encodeURIComponent(canary), canary.slice(canary.indexOf("@") + 1)]
      ) {
        if (form.length < 6) continue;
        assert.ok(!line.includes(form), `${what} printed the ${name} canary: ${line}`);
      }
    }
  }
}

/** A file holding `text`, removed on disposal. */
async function secretFile(text: string): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempFile({ prefix: "colmena-secreto-" });
  await Deno.writeTextFile(path, `${text}\n`);
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path).catch(() => {});
    },
  };
}

/** `DATABASE_URL` with a canary password and a canary `password` query value (trust auth ignores both). */
function canaryDatabaseUrl(): string {
  const url = new URL(DATABASE_URL);
  url.password = CANARY.dbPassword;
  url.searchParams.set("password", CANARY.dbQuery);
  return url.href;
}

Deno.test({
  name:
    "canary secrets in DATABASE_URL, the S3 secret and the signing key appear in no line of a server and worker start, nor in replies",
  ignore: rabbit.ignore || postgres.ignore || s3.ignore,
  async fn() {
    const target = await s3Target();
    if (target instanceof Error) throw target;
    const schema = `e2e_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
    await using queues = uniqueQueues("secretos");
    await using keyFile = await secretFile(CANARY.signingKey);
    await using dbFile = await secretFile(canaryDatabaseUrl());
    await using s3File = await secretFile(CANARY.s3Secret);
    try {
      const server = await startServer(queues, ["--db-schema", schema], {
        DATABASE_URL_FILE: dbFile.path,
        AWS_SECRET_ACCESS_KEY: CANARY.s3Secret,
        COLMENA_SIGNING_KEY: CANARY.signingKey,
      });
      const worker = await startWorker("w-secretos", queues, [
        "--clave-firma-fichero",
        keyFile.path,
      ], {
        S3_ENDPOINT: target.endpoint,
        S3_BUCKET: target.bucket,
        AWS_ACCESS_KEY_ID: target.credentials.accessKeyId,
        // s3rver checks the key id only: a canary secret is accepted and the worker starts.
        AWS_SECRET_ACCESS_KEY_FILE: s3File.path,
      });
      const replies: string[] = [];
      try {
        assert.ok(
          server.lines.some((l) =>
            /PostgreSQL postgres:\/\/postgres:\*\*\*@.*password=\*\*\*/.test(l)
          ),
          server.lines.join("\n"),
        );
        await using client = await RawClient.connect(server.port);
        await client.send({ type: "hello", id: "h", client: { name: "c", kind: "cli" } });
        replies.push(JSON.stringify(await client.reply("h")));
        const taskId = await client.submit("1", "echo", { message: "hola" });
        replies.push(JSON.stringify(await client.result(taskId)));
        await client.send({ type: "status", id: "s", taskId: "no-existe" });
        replies.push(JSON.stringify(await client.reply("s")));
        await client.send({ type: "list", id: "l", cursor: "no-es-un-cursor" });
        replies.push(JSON.stringify(await client.reply("l")));
      } finally {
        await worker.stop();
        await server.stop();
      }
      assertNoCanary(server.lines, "the server");
      assertNoCanary(worker.lines, "the worker");
      assertNoCanary(replies, "a reply");
    } finally {
      await dropPostgresSchema(DATABASE_URL, schema).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "a wrong AMQP password holding @ is not printed when the connection fails, and the host is named",
  ...rabbit,
  async fn() {
    const url = new URL(AMQP_URL);
    const wrong = `amqp://guest:${CANARY.amqpPassword}@${url.host}`;
    await using queues = uniqueQueues("clave-mala");
    const proc = new RoleProcess("server.ts", [
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--sin-http",
      "--store",
      "memory",
      "--task-queue",
      queues.taskQueue,
      "--result-queue",
      queues.resultQueue,
    ], { AMQP_URL: wrong });
    const status = await proc.status;
    await proc.stop();
    assert.equal(status.code, 1);
    assert.ok(
      proc.lines.some((l) =>
        l.includes(`No se puede conectar a RabbitMQ en amqp://guest:***@${url.host}`)
      ),
      proc.lines.join("\n"),
    );
    assertNoCanary(proc.lines, "the server");
  },
});

/** `deno task servidor …` without `-q`, as a person types it; its whole output and exit code. */
async function denoTaskServidor(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; lines: string[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "servidor",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--sin-http",
      "--store",
      "memory",
      ...args,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, lines: text.split("\n") };
}

Deno.test({
  name:
    "deno task servidor prints no secret given in the environment, and warns about one given as a flag",
  async fn() {
    // Nothing listens on port 1: the server fails after its retries, having printed what it prints.
    const secretUrl = `amqp://guest:${CANARY.amqpPassword}@127.0.0.1:1`;
    const fromEnv = await denoTaskServidor([], { AMQP_URL: secretUrl });
    assert.equal(fromEnv.code, 1);
    assert.ok(fromEnv.lines.some((l) => /^Task servidor /.test(l)), fromEnv.lines.join("\n"));
    assertNoCanary(fromEnv.lines, "deno task servidor");

    const fromFlag = await denoTaskServidor(["--amqp-url", secretUrl], {});
    assert.equal(fromFlag.code, 1);
    // `deno task` itself echoes its arguments (nothing colmena can change); the role warns about it and
    // prints the secret nowhere else.
    assert.ok(
      fromFlag.lines.some((l) =>
        /AVISO: --amqp-url lleva un secreto .* use AMQP_URL o AMQP_URL_FILE/.test(l)
      ),
      fromFlag.lines.join("\n"),
    );
    assertNoCanary(fromFlag.lines.filter((l) => !/^Task servidor /.test(l)), "the server");
  },
});
