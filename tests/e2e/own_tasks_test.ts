/**
 * End to end: a user's own task module, written in a folder outside the repository, loaded with `--tareas`
 * by `deno task servidor`, `deno task worker` and `deno task cliente` (with the permissions those tasks
 * grant), runs on the real RabbitMQ and returns its typed output; the server refuses its bad payloads before
 * the queue; tasks are routed to the workers that run their type.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import { queueDepth } from "../../shared/adapters/rabbitmq/topology.ts";
import { typeQueue } from "../../shared/adapters/rabbitmq/names.ts";
import { loadCatalog } from "../../shared/task_modules.ts";
import { TaskClient } from "../../client/task_client.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { RoleProcess, uniqueQueues } from "../_helpers/processes.ts";
import { factorialOf, writeUserTasks } from "../_helpers/user_tasks.ts";

const rabbit = await needsRabbit();

/** `deno task servidor` with the user's module, on a free port, memory store, a data folder under ./data. */
async function startServerTask(
  queues: { taskQueue: string; resultQueue: string },
  args: string[],
): Promise<RoleProcess & { port: number }> {
  const proc = new RoleProcess(
    "servidor",
    [
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--http",
      "127.0.0.1:0",
      "--store",
      "memory",
      "--task-queue",
      queues.taskQueue,
      "--result-queue",
      queues.resultQueue,
      ...args,
    ],
    {},
    { denoTask: true },
  );
  try {
    const match = await proc.waitFor(/Escuchando en 127\.0\.0\.1:(\d+)$/, 30_000);
    return Object.assign(proc, { port: Number(match[1]) });
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** `deno task worker <name>` with the given arguments, once it says it is ready. */
async function startWorkerTask(
  name: string,
  queues: { taskQueue: string; resultQueue: string },
  args: string[],
): Promise<RoleProcess> {
  const proc = new RoleProcess(
    "worker",
    [
      name,
      "--task-queue",
      queues.taskQueue,
      "--result-queue",
      queues.resultQueue,
      "--heartbeat-ms",
      "200",
      ...args,
    ],
    {},
    { denoTask: true },
  );
  try {
    await proc.waitFor(/Worker .* listo/, 30_000);
    return proc;
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** `deno task cliente …`: its exit code and output. */
async function cliente(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cliente", ...args],
    cwd: new URL("../../", import.meta.url),
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    out: decoder.decode(output.stdout),
    err: decoder.decode(output.stderr),
  };
}

async function rejection(promise: Promise<unknown>): Promise<ColmenaError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ColmenaError, String(err));
    return err;
  }
  throw new Error("expected a rejection");
}

/** Waits until `check` holds, polling; fails after `timeoutMs`. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test({
  name: "a user's task module runs through deno task servidor, worker and cliente, routed by type",
  ...rabbit,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using tasks = await writeUserTasks();
    await using queues = uniqueQueues("own");
    const dataDir = `./data/e2e-own-${crypto.randomUUID().slice(0, 8)}`;
    const shared = ["--data-dir", dataDir];
    try {
      await using server = await startServerTask(queues, ["--tareas", tasks.path, ...shared]);
      // wa runs only `resumen`; wb runs the built-in types only: it has no module.
      await using wa = await startWorkerTask("wa", queues, [
        "--tareas",
        tasks.path,
        "--solo",
        "resumen",
        ...shared,
      ]);
      await using wb = await startWorkerTask("wb", queues, shared);
      const { catalog } = await loadCatalog([tasks.path]);
      await using client = new TaskClient({ port: server.port, tasks: catalog.definitions() });

      await t.step("welcome lists the built-in and the loaded task types", async () => {
        const welcome = await client.connect();
        assert.deepEqual(welcome.taskTypes, [
          "text",
          "numbers",
          "echo",
          "sleep",
          "hash",
          "resumen",
          "factorial",
        ]);
      });

      await t.step(
        "a user task runs on the worker that loaded it and returns its output",
        async () => {
          const taskId = await client.submitUnchecked("resumen", {
            texto: "Hola. ¿Qué tal? Bien.",
          });
          const result = await client.result(taskId);
          assert.equal(result.status, "succeeded");
          assert.equal(result.worker, "wa");
          assert.deepEqual(result.status === "succeeded" && result.output, {
            frases: 3,
            palabras: 4,
            idioma: "es",
          });
          await wa.waitFor(/\[resumen [0-9a-f-]+\] resumiendo 21 caracteres \(intento 1/);
        },
      );

      await t.step("built-in tasks go to the worker of the built-in types only", async () => {
        for (let i = 0; i < 5; i++) {
          const taskId = await client.submitUnchecked("echo", { message: i });
          const result = await client.result(taskId);
          assert.equal(result.worker, "wb");
        }
      });

      await t.step("bad payloads are refused by the server and never reach the queue", async () => {
        const invalid = await rejection(client.submitUnchecked("resumen", { texto: 5 }));
        assert.equal(invalid.code, "INVALID_PAYLOAD");
        assert.match(invalid.message, /Datos no válidos para "resumen": texto/);
        const unknown = await rejection(client.submitUnchecked("video", {}));
        assert.equal(unknown.code, "UNKNOWN_TASK_TYPE");
        const big = await rejection(client.submitUnchecked("resumen", { texto: "x".repeat(5000) }));
        assert.equal(big.code, "INVALID_PAYLOAD");
        assert.match(big.message, /el límite del tipo es 4096/);
        const binary = await rejection(
          client.submitFileUnchecked("resumen", "texto", new Uint8Array([0xff, 0xfe, 0x00, 0x81])),
        );
        assert.equal(binary.code, "INVALID_PAYLOAD");
        assert.match(binary.message, /no es texto UTF-8/);
        const noFile = await rejection(
          client.submitFileUnchecked("factorial", "n", new TextEncoder().encode("5")),
        );
        assert.match(noFile.message, /no aceptan ficheros/);
        assert.equal(await queueDepth(AMQP_URL, typeQueue(queues.taskQueue, "resumen")), 0);
      });

      await t.step("a text file fills the type's file field", async () => {
        const taskId = await client.submitFileUnchecked(
          "resumen",
          "texto",
          new TextEncoder().encode("Una. Dos. Tres cuatro."),
          { idioma: "en" },
        );
        const result = await client.result(taskId);
        assert.deepEqual(result.status === "succeeded" && result.output, {
          frases: 3,
          palabras: 4,
          idioma: "en",
        });
      });

      await t.step("the workers view says which types each worker runs", async () => {
        await eventually(async () => (await client.workers()).length >= 2, "both workers beat");
        const workers = await client.workers();
        const byName = new Map(workers.map((w) => [w.worker, w.types]));
        assert.deepEqual(byName.get("wa"), ["resumen"]);
        assert.deepEqual(byName.get("wb"), ["text", "numbers", "echo", "sleep", "hash"]);
      });

      await t.step(
        "a type no worker runs waits in its queue, then runs when such a worker starts",
        async () => {
          const taskId = await client.submitUnchecked("factorial", { n: 30 });
          await eventually(
            async () =>
              (await queueDepth(AMQP_URL, typeQueue(queues.taskQueue, "factorial"))) === 1,
            "the factorial task waits in its queue",
          );
          assert.equal((await client.status(taskId)).status, "queued");
          const estado = await cliente([
            "--port",
            String(server.port),
            "--tareas",
            tasks.path,
            "estado",
            taskId,
          ]);
          assert.equal(estado.code, 0, estado.err);
          assert.match(estado.out, /ningún worker vivo ejecuta este tipo/);
          await using _wc = await startWorkerTask("wc", queues, [
            "--tareas",
            tasks.path,
            "--solo",
            "factorial",
            ...shared,
          ]);
          const result = await client.result(taskId);
          assert.equal(result.worker, "wc");
          assert.deepEqual(result.status === "succeeded" && result.output, {
            digitos: 33,
            valor: factorialOf(30),
          });
        },
      );

      await t.step(
        "the command line sends any loaded type with --datos, and lists types",
        async () => {
          const sent = await cliente([
            "--port",
            String(server.port),
            "--tareas",
            tasks.path,
            "--json",
            "enviar",
            "resumen",
            "--datos",
            '{"texto": "Sí. No."}',
          ]);
          assert.equal(sent.code, 0, sent.err);
          const json = JSON.parse(sent.out);
          assert.equal(json.status, "succeeded");
          assert.deepEqual(json.output, { frases: 2, palabras: 2, idioma: "es" });
          const types = await cliente(["--tareas", tasks.path, "--json", "tipos"]);
          assert.equal(types.code, 0, types.err);
          const resumen = JSON.parse(types.out).find((d: { name: string }) => d.name === "resumen");
          assert.equal(resumen.builtin, false);
          assert.deepEqual(resumen.input.required, ["texto"]);
          assert.equal(resumen.maxPayloadBytes, 4096);
        },
      );

      assert.ok(wb.lines.every((line) => !/resumen|factorial/.test(line)), wb.lines.join("\n"));
    } finally {
      await Deno.remove(new URL(`../../${dataDir}`, import.meta.url), { recursive: true }).catch(
        () => {},
      );
    }
  },
});
