/**
 * Starts the real `server.ts` and `worker.ts` as child processes for end-to-end tests, on unique queue
 * names and a free port, and stops them in `await using` scope.
 *
 * @module
 */
import type { QueueNames } from "../../shared/adapters/rabbitmq/names.ts";
import { deleteTopology } from "../../shared/adapters/rabbitmq/topology.ts";
import { TASK_TYPES } from "../../shared/tasks.ts";
import { AMQP_URL } from "./services.ts";
import { RoleProcess as BaseRoleProcess } from "../../scripts/role_process.ts";

/** Unique queue names for one test, so tests never share a broker queue. */
export function uniqueQueues(label = "t"): QueueNames & AsyncDisposable {
  const id = crypto.randomUUID().slice(0, 8);
  const names = {
    taskQueue: `test.${label}.${id}.tasks`,
    resultQueue: `test.${label}.${id}.results`,
  };
  return {
    ...names,
    async [Symbol.asyncDispose]() {
      await deleteTopology(AMQP_URL, names, TASK_TYPES).catch(() => {});
    },
  };
}

/** A role process (see `scripts/role_process.ts`) pointed at the tests' broker. */
export class RoleProcess extends BaseRoleProcess {
  constructor(
    script: string,
    args: string[],
    env: Record<string, string> = {},
    options: { readonly denoTask?: boolean } = {},
  ) {
    super(script, args, { env: { AMQP_URL, ...env }, denoTask: options.denoTask ?? false });
  }
}

/** A running server process, the port it listens on and its HTTP port (`undefined` with `--sin-http`). */
export interface ServerProcess extends RoleProcess {
  readonly port: number;
  readonly httpPort: number | undefined;
}

/**
 * Starts `server.ts` on 127.0.0.1 and a free port, with HTTP on another free port (unless `extraArgs` has
 * `--sin-http` or its own `--http`), and waits until it listens.
 */
export async function startServer(
  queues: QueueNames,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const ownHttp = extraArgs.some((a) =>
    a === "--sin-http" || a === "--http" || a.startsWith("--http=")
  );
  const proc = new RoleProcess("server.ts", [
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--task-queue",
    queues.taskQueue,
    "--result-queue",
    queues.resultQueue,
    ...(ownHttp ? [] : ["--http", "127.0.0.1:0"]),
    ...extraArgs,
  ], env);
  try {
    const match = await proc.waitFor(/^Escuchando en 127\.0\.0\.1:(\d+)$/);
    const noHttp = extraArgs.includes("--sin-http");
    const http = noHttp ? undefined : await proc.waitFor(/^HTTP en [^\s]+:(\d+)$/);
    return Object.assign(proc, {
      port: Number(match[1]),
      httpPort: http === undefined ? undefined : Number(http[1]),
    });
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** Starts `worker.ts` with a name, and waits until it is ready. */
export async function startWorker(
  name: string,
  queues: QueueNames,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): Promise<RoleProcess> {
  const proc = new RoleProcess("worker.ts", [
    name,
    "--task-queue",
    queues.taskQueue,
    "--result-queue",
    queues.resultQueue,
    ...extraArgs,
  ], env);
  try {
    await proc.waitFor(/^Worker .* listo/);
    return proc;
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** A temporary folder for one test's `--data-dir` (SQLite file, objects), removed on disposal. */
export async function tempDataDir(): Promise<{ readonly path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "colmena-e2e-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}
