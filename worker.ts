/**
 * The worker role: takes tasks from the queues of the task types it runs (`task_queue.<type>`), runs them,
 * reports results to `result_queue`.
 *
 * Usage: `deno task worker <nombre> [--concurrency N] [--quiet] [--tareas módulo.ts] [--solo tipos]`.
 *
 * @module
 */
import { connectWorkerBroker } from "./shared/adapters/rabbitmq/worker_broker.ts";
import { MessageSigner } from "./shared/adapters/rabbitmq/signing.ts";
import { type ConfigInput, envNames, type WorkerConfig } from "./shared/config.ts";
import {
  exitOnHelp,
  exitOnStartupError,
  exitOnTaskModuleError,
  loadRoleConfig,
  readEnv,
  shutdownSignal,
} from "./shared/lifecycle.ts";
import * as log from "./shared/log.ts";
import { openBlobStore } from "./shared/blobs.ts";
import { readPemFile } from "./shared/pem_files.ts";
import { TaskCatalog } from "./shared/catalog.ts";
import { loadCatalog, TaskModuleError } from "./shared/task_modules.ts";
import "./worker/builtin_handlers.ts";
import { registerDefinitions } from "./worker/handlers.ts";
import { TaskRegistry } from "./worker/registry.ts";
import { TaskRunner } from "./worker/runner.ts";

const USAGE = `Uso: deno task -q worker [nombre] [opciones]
  nombre, --name NOMBRE        nombre del worker                   [COLMENA_WORKER_NAME, worker-<pid>]
  --tareas FICHERO             módulo de tareas propias (repetible) [COLMENA_TAREAS, lista con comas]
  --solo TIPOS                 ejecutar solo estos tipos           [COLMENA_SOLO, lista con comas]
  --concurrency, -c N          tareas a la vez (prefetch)          [COLMENA_CONCURRENCY, 100]
  --quiet, -q                  no imprimir una línea por tarea     [COLMENA_QUIET, false]
  --memoria-tarea-mb N         memoria de cada hilo de tareas      [COLMENA_MEMORIA_TAREA_MB, 512]
  --amqp-url URL               RabbitMQ                            [AMQP_URL, amqp://guest:guest@127.0.0.1:5672]
  --amqp-ca FICHERO            CA de RabbitMQ (amqps://)           [AMQP_CA_FILE, las del sistema]
  --task-queue NOMBRE          prefijo de las colas de tareas      [COLMENA_TASK_QUEUE, task_queue]
  --result-queue NOMBRE        cola de resultados                  [COLMENA_RESULT_QUEUE, result_queue]
  --queue-type TIPO            classic o quorum (en clúster)       [COLMENA_QUEUE_TYPE, classic]
  --retry-base-ms N            espera antes del 2º intento         [COLMENA_RETRY_BASE_MS, 1000]
  --max-deliveries N           entregas de un intento como máximo  [COLMENA_MAX_DELIVERIES, 5]
  --heartbeat-ms N             intervalo del latido                [COLMENA_HEARTBEAT_MS, 5000]
  --drain-timeout-ms N         espera a las tareas al apagarse     [COLMENA_DRAIN_TIMEOUT_MS, 30000]
  --data-dir CARPETA           objetos sin S3                      [COLMENA_DATA_DIR, ./data]
  --s3-endpoint URL            servidor S3 compatible              [S3_ENDPOINT]
  --s3-bucket NOMBRE           bucket de objetos (activa S3)       [S3_BUCKET]
  --s3-region REGIÓN           región de S3                        [S3_REGION, us-east-1]
  --s3-prefix PREFIJO          prefijo de las claves               [S3_PREFIX]
  --aws-access-key-id ID       credenciales de S3                  [AWS_ACCESS_KEY_ID]
  --aws-secret-access-key K                                        [AWS_SECRET_ACCESS_KEY]
  --aws-session-token T                                            [AWS_SESSION_TOKEN]
  --clave-firma-fichero F      firmar los mensajes con RabbitMQ    [COLMENA_SIGNING_KEY_FILE, o COLMENA_SIGNING_KEY]
  --claim-check-bytes N        salida mayor → objeto               [COLMENA_CLAIM_CHECK_BYTES, 262144]
  --help, -h, --ayuda          esta ayuda
  Los secretos (AMQP_URL, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) también se leen de un fichero con
  <VARIABLE>_FILE; no los pase como opciones: \`deno task\` sin -q y \`ps\` los muestran.`;

/**
 * The task types a worker runs: its catalogue (built-in plus `--tareas` modules), narrowed to `--solo`.
 * Throws `TaskModuleError` when a module or a `--solo` name is not usable.
 */
export function selectTypes(config: WorkerConfig, catalog: TaskCatalog): TaskCatalog {
  if (config.solo === undefined) return catalog;
  const unknown = config.solo.filter((name) => !catalog.has(name));
  if (unknown.length > 0) {
    throw new TaskModuleError(
      `--solo nombra tipos que este worker no tiene: ${unknown.join(", ")} (tiene ${
        catalog.names().join(", ")
      })`,
    );
  }
  return TaskCatalog.of(catalog.definitions().filter((d) => config.solo?.includes(d.name)));
}

/**
 * Runs a worker until SIGINT/SIGTERM, then drains it. It runs the built-in task types and those of the
 * `--tareas` modules (narrowed by `--solo`), registered in `registry` (a test may pass a registry of its own).
 */
export async function runWorker(
  config: WorkerConfig,
  registry: TaskRegistry = new TaskRegistry({
    threads: { memoryMb: config.memoriaTareaMb },
  }),
  signingKey?: Uint8Array,
): Promise<void> {
  const { catalog: loaded } = await loadCatalog(config.tareas);
  const catalog = selectTypes(config, loaded);
  await registerDefinitions(registry, catalog.definitions());
  const name = config.name ?? `worker-${Deno.pid}`;
  const blobs = await openBlobStore(config);
  const runner = new TaskRunner({
    name,
    registry,
    verbose: !config.quiet,
    retryBaseMs: config.retryBaseMs,
    maxDeliveries: config.maxDeliveries,
    blobs,
    claimCheckBytes: config.claimCheckBytes,
  });
  const amqpCa = config.amqpCa === undefined
    ? undefined
    : await readPemFile(config.amqpCa, "la CA de RabbitMQ (--amqp-ca)");
  const broker = await connectWorkerBroker({
    url: config.amqpUrl,
    ca: amqpCa,
    taskQueue: config.taskQueue,
    resultQueue: config.resultQueue,
    queueType: config.queueType,
    signer: signingKey === undefined ? undefined : new MessageSigner(signingKey),
    // The loaded types, or the subset given with `--solo`: what the registry holds.
    taskTypes: registry.names(),
    prefetch: config.concurrency,
    onTask: (delivery) => runner.handle(delivery),
    onControl: (message, publishedAt) => {
      if (message.type === "cancel") runner.cancel(message.taskIds, publishedAt);
    },
  });
  runner.attach(broker);
  const startedAt = new Date().toISOString();
  let host = "desconocido";
  try {
    host = Deno.hostname();
  } catch {
    // without --allow-sys=hostname the host stays unknown
  }
  let stopping = false;
  let stopped = false;
  const beat = () =>
    broker.publishHeartbeat({
      worker: name,
      host,
      pid: Deno.pid,
      concurrency: config.concurrency,
      inProgress: runner.inProgress,
      processed: runner.processed,
      failed: runner.failed,
      startedAt,
      at: new Date().toISOString(),
      stopping,
      types: [...broker.taskTypes],
      stopped,
      batches: true,
      bulks: true,
    });
  beat();
  const heartbeats = setInterval(beat, config.heartbeatMs);
  log.info("Conectado a RabbitMQ");
  const isolated = registry.names().filter((type) => registry.get(type)?.isolated);
  log.info(
    `Worker ${name} listo: concurrencia ${config.concurrency}, tareas ${
      registry.names().join(", ")
    }${
      isolated.length === 0
        ? ""
        : ` (en hilos aparte: ${isolated.join(", ")}; hasta ${registry.maxThreads} a la vez)`
    }`,
  );
  const reason = await Promise.race([shutdownSignal(), broker.closed()]);
  if (reason instanceof Error) {
    log.error("Se perdió RabbitMQ definitivamente; el worker termina", reason);
    Deno.exit(1);
  }
  log.info(`Señal ${reason}: el worker deja de aceptar tareas y termina las que tiene`);
  stopping = true;
  beat();
  await broker.stopConsuming();
  await runner.drain(config.drainTimeoutMs);
  await registry.close();
  clearInterval(heartbeats);
  // The last heartbeat: servers drop this worker from their view now, not when it goes silent.
  stopped = true;
  beat();
  await broker.drain();
  await blobs.close();
  log.info(`Worker ${name} detenido (${runner.processed} tareas procesadas)`);
  log.flushLog();
}

/**
 * The worker command: reads its configuration from the command line and the environment, then runs
 * {@linkcode runWorker} with `registry`. Exits 2 on a bad configuration and 1 when RabbitMQ cannot be reached.
 */
export async function workerMain(input: ConfigInput, registry?: TaskRegistry): Promise<void> {
  exitOnHelp(input.args, USAGE);
  const { config, signingKey } = await loadRoleConfig("worker", input);
  try {
    await runWorker(config, registry, signingKey);
  } catch (err) {
    exitOnTaskModuleError(err);
    exitOnStartupError(err);
  }
}

if (import.meta.main) {
  await workerMain({ args: Deno.args, env: readEnv(envNames("worker")) });
}
