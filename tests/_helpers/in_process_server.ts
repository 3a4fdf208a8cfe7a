/**
 * A colmena server in the test's own process, on the real RabbitMQ, for the tests that must reach inside
 * it: hold back or fail some of its store's writes, or slow down what its broker answers. Everything else
 * is the real server (`ColmenaServer`), with the built-in task types, a folder blob store and a free port.
 *
 * @module
 */
import { loadConfig } from "../../shared/config.ts";
import type { ServerBroker, TaskStore } from "../../shared/ports.ts";
import { connectServerBroker } from "../../shared/adapters/rabbitmq/server_broker.ts";
import { openFolderBlobStore } from "../../shared/adapters/fs_blob.ts";
import { ColmenaServer } from "../../server/app.ts";
import { BUILTIN_CATALOG } from "../../shared/catalog.ts";
import { AMQP_URL } from "./services.ts";

/**
 * `target` with the given members replaced; every other method is the target's own, bound to it (a
 * `Proxy`, so that private fields keep working).
 */
export function overriding<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(t, key) {
      if (typeof key === "string" && key in overrides) return overrides[key as keyof T];
      const value = Reflect.get(t, key);
      return typeof value === "function" ? value.bind(t) : value;
    },
  });
}

/**
 * Starts a server on `store` (its `--store` flag says memory; the store given is what it uses) with the
 * queues given; `wrapBroker` may replace what the test needs of its broker (see {@linkcode overriding}).
 * Disposing of it drains the server and removes its blob folder.
 */
export async function startInProcessServer(
  queues: { taskQueue: string; resultQueue: string },
  store: TaskStore,
  options: { wrapBroker?: (broker: ServerBroker) => ServerBroker } = {},
): Promise<{ server: ColmenaServer; port: number } & AsyncDisposable> {
  const config = loadConfig("servidor", {
    args: [
      ...["--host", "127.0.0.1", "--port", "0", "--sin-http", "--store", "memory"],
      ...["--task-queue", queues.taskQueue, "--result-queue", queues.resultQueue],
    ],
    env: { AMQP_URL },
  });
  const blobDir = await Deno.makeTempDir({ prefix: "colmena-in-process-" });
  const blobs = await openFolderBlobStore(blobDir);
  const serverId = `srv-${crypto.randomUUID().slice(0, 8)}`;
  const wrap = options.wrapBroker ?? ((broker: ServerBroker) => broker);
  const server = new ColmenaServer(config, {
    serverId,
    store,
    blobs,
    catalog: BUILTIN_CATALOG,
    connectBroker: async ({ onResults, onHeartbeat }) =>
      wrap(
        await connectServerBroker({
          url: AMQP_URL,
          taskQueue: queues.taskQueue,
          resultQueue: queues.resultQueue,
          serverId,
          taskTypes: BUILTIN_CATALOG.names(),
          onResults,
          onHeartbeat,
        }),
      ),
  });
  try {
    await server.start();
  } catch (err) {
    await blobs.close();
    await Deno.remove(blobDir, { recursive: true }).catch(() => {});
    throw err;
  }
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
