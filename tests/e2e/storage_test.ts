/**
 * End to end: storage. Real server and worker processes, the real RabbitMQ, PostgreSQL (each test in a schema
 * of its own) and an S3-compatible server (tests/_helpers/s3_server.ts, or `S3_ENDPOINT`): files and large
 * outputs travel through S3, records survive a server killed with SIGKILL, the core pipeline behaves alike on
 * every store, and retention deletes old records with their objects.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { TaskClient } from "../../client.ts";
import { ColmenaError } from "../../shared/errors.ts";
import { UPLOAD_KEY, uploadOwnerTag } from "../../shared/blob_keys.ts";
import type { BlobStore } from "../../shared/ports.ts";
import { dropPostgresSchema } from "../../server/stores/postgres.ts";
import { openS3BlobStore } from "../../shared/adapters/s3.ts";
import { openFolderBlobStore } from "../../shared/adapters/fs_blob.ts";
import { processText } from "../../shared/tasks/text.ts";
import {
  DATABASE_URL,
  needsPostgres,
  needsRabbit,
  needsS3,
  type S3Target,
  s3Target,
} from "../_helpers/services.ts";
import {
  type RoleProcess,
  startServer,
  startWorker,
  tempDataDir,
  uniqueQueues,
} from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();
const postgres = await needsPostgres();
const s3 = await needsS3();
const probed = s3.ignore ? undefined : await s3Target();
const s3target: S3Target | undefined = probed instanceof Error ? undefined : probed;

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MIB = 1024 * 1024;
const decoder = new TextDecoder();

type StoreKind = "memory" | "sqlite" | "postgres";

/** Whether a test on `kind` (and S3, if it uses it) must be skipped. */
function skip(kind: StoreKind, usesS3: boolean): { ignore: boolean } {
  return {
    ignore: rabbit.ignore || (kind === "postgres" && postgres.ignore) || (usesS3 && s3.ignore),
  };
}

/** Where one test keeps its records and objects, and the flags and variables that say so. */
interface Storage extends AsyncDisposable {
  /** The server's store flags and data folder. */
  readonly serverArgs: string[];
  /** The worker's data folder (its objects when there is no S3). */
  readonly workerArgs: string[];
  /** S3 settings for server and workers, or blanks that hide any inherited ones. */
  readonly env: Record<string, string>;
  /** The test's own view of the objects the server and workers store. */
  readonly blobs: BlobStore;
  /** Where the SQLite file and the object folder live. */
  readonly dataDir: string;
}

/**
 * A fresh store of `kind` (PostgreSQL in a schema of its own, dropped afterwards; SQLite and objects in a
 * temporary folder), with objects in S3 under a unique prefix when `useS3`, else in the folder.
 */
async function openStorage(kind: StoreKind, useS3: boolean): Promise<Storage> {
  const data = await tempDataDir();
  const schema = `e2e_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const serverArgs = ["--store", kind, "--data-dir", data.path];
  if (kind === "postgres") serverArgs.push("--database-url", DATABASE_URL, "--db-schema", schema);
  // Blank values count as unset: nothing from the test's own environment leaks into the children.
  let env: Record<string, string> = { DATABASE_URL: "", S3_BUCKET: "", S3_ENDPOINT: "" };
  let blobs: BlobStore;
  if (useS3) {
    assert.ok(s3target !== undefined, "no S3 server");
    const prefix = `e2e/${crypto.randomUUID()}`;
    const { accessKeyId, secretAccessKey, sessionToken } = s3target.credentials;
    env = {
      ...env,
      S3_ENDPOINT: s3target.endpoint,
      S3_BUCKET: s3target.bucket,
      S3_REGION: s3target.region,
      S3_PREFIX: prefix,
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      ...(sessionToken === undefined ? {} : { AWS_SESSION_TOKEN: sessionToken }),
    };
    blobs = await openS3BlobStore({
      endpoint: s3target.endpoint,
      bucket: s3target.bucket,
      region: s3target.region,
      prefix,
      credentials: s3target.credentials,
    });
  } else {
    blobs = await openFolderBlobStore(`${data.path}/blobs`);
  }
  return {
    serverArgs,
    workerArgs: ["--data-dir", data.path],
    env,
    blobs,
    dataDir: data.path,
    async [Symbol.asyncDispose]() {
      await blobs.close();
      if (kind === "postgres") await dropPostgresSchema(DATABASE_URL, schema);
      await data[Symbol.asyncDispose]();
    },
  };
}

/** A text of at least `bytes` UTF-8 bytes with accents, emoji and line breaks, and its word count. */
function bookText(bytes: number): { text: string; words: number } {
  const vocabulary = ["hola", "mundo", "ñandú", "colmena", "abejas", "miel", "👍🏽", "año", "🇪🇸"];
  const parts: string[] = [];
  let size = 0;
  let words = 0;
  while (size < bytes) {
    const word = vocabulary[words % vocabulary.length]!;
    const part = words % 13 === 12 ? `${word}\n` : `${word} `;
    parts.push(part);
    size += new TextEncoder().encode(part).length;
    words++;
  }
  return { text: parts.join(""), words };
}

/** Rejects unless `promise` rejects with a `ColmenaError` of `code`. */
async function assertCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ColmenaError, `expected ColmenaError, got ${err}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** Submits a task that reads an already uploaded file, over a raw socket; resolves with its id and result. */
async function submitUploaded(
  port: number,
  ref: string,
): Promise<{ taskId: string; result: Record<string, unknown> }> {
  await using raw = await RawClient.connect(port);
  await raw.send({
    type: "submit",
    id: "f1",
    task: { type: "text", payload: {}, file: { ref, field: "text" } },
  });
  const accepted = await raw.reply("f1");
  assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
  const taskId = String(accepted.taskId);
  return { taskId, result: await raw.result(taskId, 60_000) };
}

/** `promise`, or a failure after `timeoutMs`: a result that never comes fails the test instead of hanging it. */
async function within<T>(promise: Promise<T>, timeoutMs = 60_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Nothing came within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every 100 ms until it returns true, for at most `timeoutMs`. */
async function eventually(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A TCP port that was free a moment ago, so a restarted server can listen on the same one. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

for (const kind of ["sqlite", "postgres"] as const) {
  Deno.test({
    name:
      `${kind} + S3: a 5 MiB file and its 10 MiB output travel through S3, never through RabbitMQ`,
    ...skip(kind, true),
    async fn() {
      await using storage = await openStorage(kind, true);
      await using queues = uniqueQueues(`s3-${kind}`);
      await using server = await startServer(queues, storage.serverArgs, storage.env);
      await using _worker = await startWorker("w1", queues, storage.workerArgs, storage.env);
      await using client = new TaskClient({ host: "127.0.0.1", port: server.port });
      const { text, words } = bookText(5 * MIB);
      const bytes = new TextEncoder().encode(text);
      const expected = processText(text);

      // Uploaded in pieces to S3; a task over a raw socket then names it: its message carries only the ref.
      const uploaded = await client.upload(
        ReadableStream.from([bytes.subarray(0, 1_000_001), bytes.subarray(1_000_001)]),
      );
      // The key records its owner: this client's principal, its hello name ("cliente").
      assert.equal(uploaded.ref.slice(0, -36), `uploads/${uploadOwnerTag("cliente")}/`);
      assert.match(uploaded.ref, UPLOAD_KEY);
      assert.equal(uploaded.bytes, bytes.length);
      assert.deepEqual(await storage.blobs.get(uploaded.ref), bytes);
      const { taskId, result } = await submitUploaded(server.port, uploaded.ref);
      assert.equal(result.status, "succeeded", JSON.stringify(result));
      // The result frame names the output; the output itself stays in S3 until downloaded.
      assert.equal(result.output, undefined);
      assert.equal(result.outputRef, `tasks/${taskId}/output`);
      const stored = await storage.blobs.get(`tasks/${taskId}/output`);
      assert.ok(stored.length > 10 * MIB, `output of ${stored.length} bytes`);
      assert.equal(result.outputBytes, stored.length);
      // Nothing of the payload went to S3 as a claim check: it was `{}` plus the file's ref.
      await assertCode(storage.blobs.get(`tasks/${taskId}/payload`), "NOT_FOUND");
      const downloaded = await client.download(`tasks/${taskId}/output`);
      assert.deepEqual(downloaded, stored);
      assert.deepEqual(JSON.parse(decoder.decode(downloaded)), expected);
      assert.equal(expected.words, words);

      // The record keeps the reference, not the output.
      const view = await client.status(taskId);
      assert.equal(view.status, "succeeded");
      assert.equal(view.outputRef, `tasks/${taskId}/output`);
      assert.equal(view.output, undefined);

      // TaskClient.submitFile streams a file from disk, and result() downloads the large output itself.
      const path = `${storage.dataDir}/libro.txt`;
      await Deno.writeFile(path, bytes);
      const file = await Deno.open(path);
      const streamed = await client.submitFile("text", "text", file.readable);
      const end = await within(client.result<"text">(streamed));
      assert.equal(end.status, "succeeded");
      assert.equal(end.outputRef, `tasks/${streamed}/output`);
      if (end.status === "succeeded") {
        assert.equal(end.output.words, words);
        assert.equal(end.output.upper, expected.upper);
        assert.equal(end.output.reversed, expected.reversed);
      }
      await storage.blobs.delete([
        uploaded.ref,
        `tasks/${taskId}/output`,
        `tasks/${streamed}/output`,
      ]);
    },
  });
}

Deno.test({
  name:
    "cliente enviar texto --archivo streams a file and sums up its large output; --salida saves it",
  ...skip("sqlite", true),
  async fn() {
    await using storage = await openStorage("sqlite", true);
    await using queues = uniqueQueues("archivo");
    await using server = await startServer(queues, storage.serverArgs, storage.env);
    await using _worker = await startWorker("w1", queues, storage.workerArgs, storage.env);
    const { text, words } = bookText(5 * MIB);
    const book = `${storage.dataDir}/libro.txt`;
    const saved = `${storage.dataDir}/resultado.json`;
    await Deno.writeTextFile(book, text);

    // Run as `deno task cliente` runs it: the task's own permission flags.
    const deno = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
    const taskArgs = String(deno.tasks.cliente).split(" ").slice(1);
    const cliente = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [...taskArgs, "--host", "127.0.0.1", "--port", String(server.port), ...args],
        cwd: ROOT,
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      return {
        code: out.code,
        stdout: decoder.decode(out.stdout),
        stderr: decoder.decode(out.stderr),
      };
    };

    const sent = await cliente("enviar", "texto", "--archivo", book, "--salida", saved);
    assert.equal(sent.code, 0, sent.stderr);
    assert.match(sent.stdout, /Tarea completada: texto/);
    assert.match(sent.stdout, new RegExp(`palabras: +${words}\\n`));
    assert.match(sent.stdout, /invertido: +5\.0 MiB \(\d+ bytes\)/);
    assert.match(sent.stdout, /guardado: +.*resultado\.json \(10\.\d MiB, JSON\)/);
    assert.ok(sent.stdout.length < 2_000, `printed ${sent.stdout.length} characters`);
    const output = JSON.parse(await Deno.readTextFile(saved));
    assert.equal(output.words, words);
    assert.equal(output.upper, text.toUpperCase());

    // Without --salida, --json still gives scripts the whole output.
    await Deno.writeTextFile(book, "uno dos tres");
    const small = await cliente("--json", "enviar", "texto", "--archivo", book);
    assert.equal(small.code, 0, small.stderr);
    const json = JSON.parse(small.stdout.trim().split("\n").at(-1)!);
    assert.deepEqual(json.output, { words: 3, reversed: "sert sod onu", upper: "UNO DOS TRES" });

    const missing = await cliente(
      "enviar",
      "texto",
      "--archivo",
      `${storage.dataDir}/no-existe.txt`,
    );
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No existe el fichero/);
    const wrongType = await cliente("enviar", "numeros", "--archivo", book);
    assert.equal(wrongType.code, 2);
    assert.match(wrongType.stderr, /--archivo solo sirve con texto y hash/);
  },
});

for (const kind of ["sqlite", "postgres"] as const) {
  Deno.test({
    name:
      `${kind}: a server killed with SIGKILL after "accepted" loses nothing; restarted, it answers from the store`,
    ...skip(kind, false),
    async fn() {
      await using storage = await openStorage(kind, false);
      await using queues = uniqueQueues(`restart-${kind}`);
      const port = freePort();
      const args = [...storage.serverArgs, "--port", String(port)];
      let server: RoleProcess = await startServer(queues, args, storage.env);
      try {
        await using _worker = await startWorker("w1", queues, storage.workerArgs, storage.env);
        await using client = new TaskClient({
          host: "127.0.0.1",
          port,
          name: "reinicio",
          reconnectForMs: 30_000,
        });
        const long = await client.submit("sleep", { ms: 2_500 });
        const quick = await client.submit("echo", { message: "antes" });
        assert.equal((await within(client.result(quick))).status, "succeeded");
        await eventually(
          "the sleep to run",
          async () => (await client.status(long)).status === "running",
        );

        server.kill("SIGKILL");
        assert.equal((await server.status).signal, "SIGKILL");
        server = await startServer(queues, args, storage.env);

        // The client reconnects, watches what it awaited, and gets it: from the store or the result queue.
        const result = await within(client.result<"sleep">(long));
        assert.equal(result.status, "succeeded");
        if (result.status === "succeeded") assert.ok(result.output.sleptMs >= 2_500);
        const view = await client.status(long);
        assert.equal(view.status, "succeeded");
        assert.equal(view.worker, "w1");
        assert.equal(view.attempts, 1);
        assert.equal((await client.status(quick)).status, "succeeded");
        const { items } = await client.list({ clientName: "reinicio" });
        assert.deepEqual(items.map((t) => t.taskId).sort(), [long, quick].sort());
      } finally {
        await server.stop();
      }
    },
  });
}

for (const kind of ["memory", "sqlite", "postgres"] as const) {
  Deno.test({
    name:
      `${kind}: every task type, status, list pages, cancel of a queued task, idempotency and claim checks`,
    ...skip(kind, false),
    async fn() {
      await using storage = await openStorage(kind, false);
      await using queues = uniqueQueues(`core-${kind}`);
      const small = ["--claim-check-bytes", "2048"];
      await using server = await startServer(
        queues,
        [...storage.serverArgs, ...small],
        storage.env,
      );
      const name = `core-${crypto.randomUUID().slice(0, 8)}`;
      await using client = new TaskClient({
        host: "127.0.0.1",
        port: server.port,
        name,
        kind: "web",
      });

      // No worker yet: the task stays queued, and can be cancelled.
      const queued = await client.submit("sleep", { ms: 10 });
      assert.deepEqual(await client.cancel(queued), { cancelled: true, status: "cancelled" });
      const cancelled = await within(client.result(queued));
      assert.equal(cancelled.status, "cancelled");
      assert.deepEqual(await client.cancel(queued), { cancelled: false, status: "cancelled" });

      const once = await client.submit("echo", { message: "una vez" }, {
        idempotencyKey: "clave-1",
      });
      assert.equal(
        await client.submit("echo", { message: "una vez" }, { idempotencyKey: "clave-1" }),
        once,
      );

      await using _worker = await startWorker(
        "w1",
        queues,
        [...storage.workerArgs, ...small],
        storage.env,
      );
      const big = "ñ".repeat(3_000);
      const submitted = {
        text: await client.submit("text", { text: "hola mundo" }),
        numbers: await client.submit("numbers", { numbers: [4, 8, 15, 16, 23, 42] }),
        echo: await client.submit("echo", { message: { a: [1, null, "ñ"] } }),
        sleep: await client.submit("sleep", { ms: 20 }),
        hash: await client.submit("hash", { data: "abc" }),
        // Larger than the claim check: payload and output go through the object store.
        large: await client.submit("echo", { message: big }),
      };
      const outputs = {
        text: { words: 2, reversed: "odnum aloh", upper: "HOLA MUNDO" },
        numbers: { count: 6, sum: 108, avg: 18, min: 4, max: 42 },
        echo: { message: { a: [1, null, "ñ"] } },
        sleep: undefined,
        hash: { sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        large: { message: big },
      };
      for (const [label, taskId] of Object.entries(submitted)) {
        const result = await within(client.result(taskId));
        assert.equal(result.status, "succeeded", `${label}: ${JSON.stringify(result)}`);
        const expected = outputs[label as keyof typeof outputs];
        if (result.status === "succeeded" && expected !== undefined) {
          assert.deepEqual(result.output, expected, label);
        }
        const view = await client.status(taskId);
        assert.equal(view.status, "succeeded", label);
        assert.equal(view.worker, "w1", label);
        assert.equal(view.client.name, name);
        if (label === "large") {
          assert.equal(view.outputRef, `tasks/${taskId}/output`);
          assert.equal(view.output, undefined);
        } else if (expected !== undefined) {
          assert.deepEqual(view.output, expected, label);
        }
      }
      assert.equal((await within(client.result(once))).status, "succeeded");
      // The worker started after the cancel, read it first and dropped the message; the record stays final.
      assert.equal((await client.status(queued)).status, "cancelled");

      // Pages of three, newest first, until the cursor runs out.
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      let last = Infinity;
      do {
        const page = await client.list(
          { clientName: name },
          cursor === undefined ? { limit: 3 } : { limit: 3, cursor },
        );
        pages++;
        for (const item of page.items) {
          const at = Date.parse(item.submittedAt);
          assert.ok(at <= last, "newest first");
          last = at;
          seen.push(item.taskId);
        }
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
      const all = [queued, once, ...Object.values(submitted)];
      assert.deepEqual(seen.toSorted(), all.toSorted());
      assert.equal(pages, Math.ceil(all.length / 3));
      const onlyCancelled = await client.list({ clientName: name, statuses: ["cancelled"] });
      assert.deepEqual(onlyCancelled.items.map((t) => t.taskId), [queued]);
    },
  });
}

for (const [kind, useS3] of [["memory", false], ["sqlite", true], ["postgres", true]] as const) {
  Deno.test({
    name: `${kind}${
      useS3 ? " + S3" : ""
    }: retention deletes finished records, their objects and unused uploads, and logs how many`,
    ...skip(kind, useS3),
    async fn() {
      await using storage = await openStorage(kind, useS3);
      await using queues = uniqueQueues(`retention-${kind}`);
      const small = ["--claim-check-bytes", "1024"];
      await using server = await startServer(queues, [
        ...storage.serverArgs,
        ...small,
        // About 4.3 s, looked at five times a second: long enough that the upload below is submitted (the
        // server reads it to check its text) before it is old enough to be swept as unused.
        ...["--retention-days", "0.00005", "--prune-interval-ms", "200"],
      ], storage.env);
      await using _worker = await startWorker(
        "w1",
        queues,
        [...storage.workerArgs, ...small],
        storage.env,
      );
      await using client = new TaskClient({ host: "127.0.0.1", port: server.port });

      const echo = await client.submit("echo", { message: "x".repeat(3_000) });
      const numbers = await client.submit("numbers", { numbers: [1, 2, 3] });
      // A file uploaded for a task that is never submitted (its client died in between).
      const unused = await client.upload(new TextEncoder().encode("huérfano ".repeat(100)));
      const upload = await client.upload(new TextEncoder().encode("palabra ".repeat(500)));
      const { taskId: text, result } = await submitUploaded(server.port, upload.ref);
      assert.equal(result.status, "succeeded");
      assert.equal((await within(client.result(echo))).status, "succeeded");
      assert.equal((await within(client.result(numbers))).status, "succeeded");
      const keys = [
        `tasks/${echo}/payload`,
        `tasks/${echo}/output`,
        upload.ref,
        `tasks/${text}/output`,
      ];

      for (const taskId of [echo, numbers, text]) {
        await eventually(`record ${taskId} to be pruned`, async () => {
          try {
            await client.status(taskId);
            return false;
          } catch (err) {
            if (err instanceof ColmenaError && err.code === "NOT_FOUND") return true;
            throw err;
          }
        });
      }
      const pruned = () => {
        let tasks = 0;
        let objects = 0;
        for (const line of server.lines) {
          const match = line.match(
            /Retención: (\d+) tareas terminadas .* borradas, con (\d+) objetos/,
          );
          if (match) {
            tasks += Number(match[1]);
            objects += Number(match[2]);
          }
        }
        return { tasks, objects };
      };
      await eventually("the retention log lines", () => pruned().tasks === 3);
      assert.deepEqual(pruned(), { tasks: 3, objects: keys.length });
      for (const key of keys) await assertCode(storage.blobs.get(key), "NOT_FOUND");
      const sweptUploads = () =>
        server.lines.reduce((n, line) => {
          const match = line.match(/Retención: (\d+) ficheros subidos .* que ninguna tarea lee/);
          return n + (match ? Number(match[1]) : 0);
        }, 0);
      await eventually("the unused upload to be swept", () => sweptUploads() === 1);
      await assertCode(storage.blobs.get(unused.ref), "NOT_FOUND");
    },
  });
}
