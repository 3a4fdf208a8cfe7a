/**
 * The worker role: takes tasks from `task_queue`, runs them, reports results to `result_queue`.
 *
 * Usage: `deno task worker <nombre> [--concurrency N] [--quiet]`.
 *
 * @module
 */
import { connectWorkerBroker } from "./shared/adapters/rabbitmq.ts";
import { envNames, loadConfig, type WorkerConfig } from "./shared/config.ts";
import { ColmenaError } from "./shared/errors.ts";
import { exitOnConfigError, readEnv, shutdownSignal } from "./shared/lifecycle.ts";
import * as log from "./shared/log.ts";
import { registerBuiltinTasks } from "./worker/builtin_tasks.ts";
import { TaskRegistry } from "./worker/registry.ts";
import { TaskRunner } from "./worker/runner.ts";

const USAGE = `Uso: worker <nombre> [opciones]
  --concurrency, -c N   tareas a la vez (prefetch)        [COLMENA_CONCURRENCY, 100]
  --quiet, -q           no imprimir una línea por tarea   [COLMENA_QUIET]
  --amqp-url URL        RabbitMQ                          [AMQP_URL]
  --task-queue NOMBRE   cola de tareas                    [COLMENA_TASK_QUEUE, task_queue]
  --result-queue NOMBRE cola de resultados                [COLMENA_RESULT_QUEUE, result_queue]`;

/** How long a worker waits for its tasks in progress at shutdown before handing them back. */
const DRAIN_TIMEOUT_MS = 30_000;

/** Runs a worker until SIGINT/SIGTERM, then drains it. */
export async function runWorker(config: WorkerConfig): Promise<void> {
  const name = config.name ?? `worker-${Deno.pid}`;
  const registry = registerBuiltinTasks(new TaskRegistry());
  const runner = new TaskRunner({ name, registry, verbose: !config.quiet });
  const broker = await connectWorkerBroker({
    url: config.amqpUrl,
    taskQueue: config.taskQueue,
    resultQueue: config.resultQueue,
    prefetch: config.concurrency,
    onTask: (delivery) => runner.handle(delivery),
  });
  runner.attach(broker);
  log.info("Conectado a RabbitMQ");
  log.info(
    `Worker ${name} listo: concurrencia ${config.concurrency}, tareas ${
      registry.names().join(", ")
    }`,
  );
  const reason = await Promise.race([shutdownSignal(), broker.closed()]);
  if (reason instanceof Error) {
    log.error("Se perdió RabbitMQ definitivamente; el worker termina", reason);
    Deno.exit(1);
  }
  log.info(`Señal ${reason}: el worker deja de aceptar tareas y termina las que tiene`);
  await broker.stopConsuming();
  await runner.drain(DRAIN_TIMEOUT_MS);
  await broker.drain();
  log.info(`Worker ${name} detenido (${runner.processed} tareas procesadas)`);
  log.flushLog();
}

if (import.meta.main) {
  let config: WorkerConfig;
  try {
    config = loadConfig("worker", { args: Deno.args, env: readEnv(envNames("worker")) });
  } catch (err) {
    exitOnConfigError(err, USAGE);
  }
  try {
    await runWorker(config);
  } catch (err) {
    if (err instanceof ColmenaError) {
      log.error(err.message, err.cause);
      Deno.exit(1);
    }
    throw err;
  }
}
