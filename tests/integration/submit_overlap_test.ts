/**
 * The submit path of a plain task on a store only this server writes: the record and the publish run at
 * once, a result that comes before the broker's confirm answers `accepted` at once, and a record that fails
 * after the task was queued answers the store's error and cancels the task.
 *
 * An in-process server (so that the broker's confirm and the store's create can be slowed or failed) on the
 * real RabbitMQ, with a real worker process.
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import { loadConfig } from "../../shared/config.ts";
import type { NewTask, ServerBroker, TaskStore } from "../../shared/ports.ts";
import type { ControlMessage, TaskMessage } from "../../shared/queue_messages.ts";
import { connectServerBroker } from "../../shared/adapters/rabbitmq/server_broker.ts";
import { openFolderBlobStore } from "../../shared/adapters/fs_blob.ts";
import { ColmenaServer } from "../../server/app.ts";
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import { BUILTIN_CATALOG } from "../../shared/catalog.ts";
import { startWorker, tempDataDir, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";

/** How long the wrapped broker holds each task's confirm back. */
const CONFIRM_DELAY_MS = 4_000;

/** A server on `store`, whose broker's task confirms are seen `CONFIRM_DELAY_MS` late when `slowConfirms`. */
async function startInProcess(
  queues: { taskQueue: string; resultQueue: string },
  store: TaskStore,
  options: { slowConfirms?: boolean; controls?: ControlMessage[] } = {},
): Promise<{ server: ColmenaServer; port: number } & AsyncDisposable> {
  const config = loadConfig("servidor", {
    args: [
      ...["--host", "127.0.0.1", "--port", "0", "--sin-http", "--store", "memory"],
      ...["--task-queue", queues.taskQueue, "--result-queue", queues.resultQueue],
    ],
    env: { AMQP_URL },
  });
  const blobDir = await Deno.makeTempDir({ prefix: "colmena-overlap-" });
  const blobs = await openFolderBlobStore(blobDir);
  const serverId = `srv-${crypto.randomUUID().slice(0, 8)}`;
  const server = new ColmenaServer(config, {
    serverId,
    store,
    blobs,
    catalog: BUILTIN_CATALOG,
    connectBroker: async ({ onResults, onHeartbeat }) => {
      const broker = await connectServerBroker({
        url: AMQP_URL,
        taskQueue: queues.taskQueue,
        resultQueue: queues.resultQueue,
        serverId,
        taskTypes: BUILTIN_CATALOG.names(),
        onResults,
        onHeartbeat,
      });
      return new Proxy(broker, {
        get(target, key) {
          if (key === "publishTask" && options.slowConfirms) {
            return async (task: TaskMessage) => {
              await target.publishTask(task);
              await new Promise((r) => setTimeout(r, CONFIRM_DELAY_MS));
            };
          }
          if (key === "publishControl") {
            return (message: ControlMessage) => {
              options.controls?.push(message);
              return target.publishControl(message);
            };
          }
          const value = Reflect.get(target, key);
          return typeof value === "function" ? value.bind(target) : value;
        },
      }) as ServerBroker;
    },
  });
  await server.start();
  return {
    server,
    port: server.addr.port,
    async [Symbol.asyncDispose]() {
      await server.drain();
      await blobs.close();
      await Deno.remove(blobDir, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test({
  name:
    "a task whose result comes before the broker's confirm is answered accepted, then its result, without waiting for the confirm",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap");
    const store = new MemoryTaskStore();
    await using app = await startInProcess(queues, store, { slowConfirms: true });
    await using workerData = await tempDataDir();
    await using _worker = await startWorker("w1", queues, ["--data-dir", workerData.path]);
    await using client = await RawClient.connect(app.port);
    await client.send({ type: "hello", id: "h", client: { name: "overlap", kind: "cli" } });
    await client.next((f) => f.type === "welcome");

    const started = performance.now();
    await client.send({
      type: "submit",
      id: "s1",
      task: { type: "echo", payload: { message: "hola" } },
    });
    const accepted = await client.next((f) => f.id === "s1");
    assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
    const result = await client.next((f) => f.type === "result" && f.taskId === accepted.taskId);
    const elapsed = performance.now() - started;
    assert.equal(result.status, "succeeded");
    assert.deepEqual(result.output, { message: "hola" });
    assert.ok(
      elapsed < CONFIRM_DELAY_MS,
      `accepted and result came in ${elapsed.toFixed(0)} ms, before the held confirm`,
    );
    // The record says what the client was told.
    assert.equal((await store.get(String(accepted.taskId)))?.status, "succeeded");
  },
});

Deno.test({
  name:
    "a plain task whose record fails while it is being queued gets STORE_UNAVAILABLE, is cancelled, and the server keeps serving",
  ...(await needsRabbit()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using queues = uniqueQueues("overlap-fail");
    const memory = new MemoryTaskStore();
    let failCreates = true;
    const store = new Proxy(memory, {
      get(target, key) {
        if (key === "create") {
          return (task: NewTask) =>
            failCreates
              ? Promise.reject(new ColmenaError("STORE_UNAVAILABLE"))
              : target.create(task);
        }
        const value = Reflect.get(target, key);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as TaskStore;
    const controls: ControlMessage[] = [];
    await using app = await startInProcess(queues, store, { controls });
    await using client = await RawClient.connect(app.port);
    await client.send({ type: "hello", id: "h", client: { name: "overlap", kind: "cli" } });
    await client.next((f) => f.type === "welcome");

    await client.send({
      type: "submit",
      id: "s1",
      task: { type: "echo", payload: { message: "x" } },
    });
    const refused = await client.next((f) => f.id === "s1");
    assert.equal(refused.type, "error", JSON.stringify(refused));
    assert.equal(refused.code, "STORE_UNAVAILABLE");
    // The copy that reached the queue is cancelled, so a worker drops it instead of running it.
    assert.equal(controls.length, 1);
    const cancel = controls[0]!;
    assert.equal(cancel.type, "cancel");
    assert.equal(cancel.type === "cancel" ? cancel.taskIds.length : 0, 1);

    failCreates = false;
    await client.send({
      type: "submit",
      id: "s2",
      task: { type: "echo", payload: { message: "y" } },
    });
    const accepted = await client.next((f) => f.id === "s2");
    assert.equal(accepted.type, "accepted", JSON.stringify(accepted));
    assert.equal((await memory.get(String(accepted.taskId)))?.status, "queued");
  },
});
