/**
 * The server role: the TCP front end that clients talk to.
 *
 * Usage: `deno task servidor [--host H] [--port P] [--http H:P | --sin-http] …`; prints
 * `Conectado a RabbitMQ`, `Servidor iniciado`, `Escuchando en <host>:<port>` and `HTTP en <host>:<port>`
 * once ready.
 *
 * @module
 */
import { connectServerBroker } from "./shared/adapters/rabbitmq/server_broker.ts";
import { MessageSigner } from "./shared/adapters/rabbitmq/signing.ts";
import { envNames, type ServerConfig } from "./shared/config.ts";
import {
  exitOnHelp,
  exitOnStartupError,
  exitOnTaskModuleError,
  loadRoleConfig,
  readEnv,
  shutdownSignal,
} from "./shared/lifecycle.ts";
import * as log from "./shared/log.ts";
import { loadCatalog } from "./shared/task_modules.ts";
import { ColmenaServer } from "./server/app.ts";
import { HttpAddrInUseError } from "./server/http.ts";
import { describeStore, openTaskStore } from "./server/stores/open.ts";
import { schedulePruning } from "./server/retention.ts";
import { loadTokenRegistry, type TokenRegistry } from "./server/tokens.ts";
import { checkUnauthenticatedBind, UnsafeBindError } from "./server/protected_mode.ts";
import { TokenFileError } from "./shared/tokens.ts";
import { describeBlobStore, openBlobStore } from "./shared/blobs.ts";
import { readPemFile } from "./shared/pem_files.ts";

const USAGE = `Uso: deno task -q servidor [opciones]
  --tareas FICHERO             módulo de tareas propias (repetible) [COLMENA_TAREAS, lista con comas]
  --host HOST                  dirección de escucha               [COLMENA_HOST, localhost]
  --port, -p PUERTO            puerto TCP (0 = libre)             [COLMENA_PORT, 8888]
  --amqp-url URL               RabbitMQ                           [AMQP_URL, amqp://guest:guest@127.0.0.1:5672]
  --task-queue NOMBRE          prefijo de las colas de tareas     [COLMENA_TASK_QUEUE, task_queue]
  --result-queue NOMBRE        cola de resultados                 [COLMENA_RESULT_QUEUE, result_queue]
  --queue-type TIPO            classic o quorum (en clúster)      [COLMENA_QUEUE_TYPE, classic]
  --server-id ID               id de este servidor                [COLMENA_SERVER_ID, aleatorio]
  --http HOST:PUERTO           HTTP: panel, /cliente, /metrics…   [COLMENA_HTTP, localhost:8080]
  --sin-http                   sin escucha HTTP                   [COLMENA_SIN_HTTP]
  --drain-delay-ms N           al apagarse, /readyz da 503 antes  [COLMENA_DRAIN_DELAY_MS, 0]
  --store TIPO                 sqlite, postgres o memory          [COLMENA_STORE, según DATABASE_URL]
  --database-url URL           PostgreSQL                         [DATABASE_URL]
  --db-schema NOMBRE           esquema de PostgreSQL              [COLMENA_DB_SCHEMA, public]
  --data-dir CARPETA           SQLite y objetos sin S3            [COLMENA_DATA_DIR, ./data]
  --s3-endpoint URL            servidor S3 compatible             [S3_ENDPOINT]
  --s3-bucket NOMBRE           bucket de objetos (activa S3)      [S3_BUCKET]
  --s3-region REGIÓN           región de S3                       [S3_REGION, us-east-1]
  --s3-prefix PREFIJO          prefijo de las claves              [S3_PREFIX]
  --aws-access-key-id ID       credenciales de S3                 [AWS_ACCESS_KEY_ID]
  --aws-secret-access-key K                                       [AWS_SECRET_ACCESS_KEY]
  --aws-session-token T                                           [AWS_SESSION_TOKEN]
  --clave-firma-fichero F      firmar los mensajes con RabbitMQ   [COLMENA_SIGNING_KEY_FILE, o COLMENA_SIGNING_KEY]
  --claim-check-bytes N        carga mayor → objeto               [COLMENA_CLAIM_CHECK_BYTES, 262144]
  --max-upload-bytes N         fichero subido máximo              [COLMENA_MAX_UPLOAD_BYTES, 268435456]
  --retention-days N           borrar terminadas tras N días      [COLMENA_RETENTION_DAYS, 7]
  --prune-interval-ms N        cada cuánto se borran              [COLMENA_PRUNE_INTERVAL_MS, 3600000]
  --max-attempts N             intentos por tarea                 [COLMENA_MAX_ATTEMPTS, 3]
  --publish-retry-ms N         reintento de publicación           [COLMENA_PUBLISH_RETRY_MS, 15000]
  --tareas-por-mensaje N       tareas juntas en un mensaje (1: no) [COLMENA_TAREAS_POR_MENSAJE, 32]
  --max-line-bytes N           línea máxima                       [COLMENA_MAX_LINE_BYTES, 1048576]
  --max-json-depth N           anidamiento JSON máximo            [COLMENA_MAX_JSON_DEPTH, 64]
  --max-connections N          conexiones a la vez                [COLMENA_MAX_CONNECTIONS, 10000]
  --max-pending N              peticiones sin responder           [COLMENA_MAX_PENDING, 10000]
  --max-pending-bytes N        bytes sin responder (luego no lee) [COLMENA_MAX_PENDING_BYTES, 16777216]
  --max-output-bytes N         salida pendiente máxima            [COLMENA_MAX_OUTPUT_BYTES, 16777216]
  --max-result-bytes-in-flight N  resultados en memoria a la vez  [COLMENA_MAX_RESULT_BYTES_IN_FLIGHT, 67108864]
  --write-timeout-ms N         espera máxima de escritura         [COLMENA_WRITE_TIMEOUT_MS, 30000]
  --rate-limit N               peticiones/s por conexión          [COLMENA_RATE_LIMIT, 20000]
  --rate-burst N               peticiones acumulables             [COLMENA_RATE_BURST, 40000]
  --memory-max-tasks N         registros con --store memory       [COLMENA_MEMORY_MAX_TASKS, 200000]
  --idle-timeout-ms N          cierre por inactividad             [COLMENA_IDLE_TIMEOUT_MS, 600000]
  --partial-line-timeout-ms N  línea incompleta máxima            [COLMENA_PARTIAL_LINE_TIMEOUT_MS, 60000]
  --tokens FICHERO             tokens de acceso (solo sus hashes) [COLMENA_TOKENS_FILE]
                               (créelos con: deno task cliente token crear <nombre> --tokens FICHERO)
  --auth-timeout-ms N          plazo para el hello con token      [COLMENA_AUTH_TIMEOUT_MS, 10000]
  --inseguro                   sin tokens fuera de loopback (avisa) [COLMENA_INSEGURO]
  --max-connections-per-address N  conexiones por IP              [COLMENA_MAX_CONNECTIONS_PER_ADDRESS, 1000]
  --max-uploads-per-connection N   subidas abiertas por conexión  [COLMENA_MAX_UPLOADS_PER_CONNECTION, 4]
  --max-uploads N              subidas abiertas en total          [COLMENA_MAX_UPLOADS, 256]
 Cuotas por principal con rol cliente (los admin están exentos):
  --quota-in-flight N          tareas sin terminar                [COLMENA_QUOTA_IN_FLIGHT, 1000]
  --quota-submit-rate N        envíos por segundo                 [COLMENA_QUOTA_SUBMIT_RATE, 50]
  --quota-max-priority N       prioridad máxima                   [COLMENA_QUOTA_MAX_PRIORITY, 5]
  --quota-budget-ms N          intentos × timeout por tarea       [COLMENA_QUOTA_BUDGET_MS, 600000]
  --quota-uploads N            subidas por hora                   [COLMENA_QUOTA_UPLOADS, 100]
  --quota-upload-bytes N       bytes subidos por hora             [COLMENA_QUOTA_UPLOAD_BYTES, 1073741824]
  --tls-cert FICHERO           certificado TLS del servidor (PEM) [COLMENA_TLS_CERT]
  --tls-key FICHERO            su clave privada (PEM)             [COLMENA_TLS_KEY]
  --tls-ca-clientes FICHERO    CA de clientes: TLS mutuo          [COLMENA_TLS_CA_CLIENTES]
  --tls-handshake-timeout-ms N saludo TLS máximo                  [COLMENA_TLS_HANDSHAKE_TIMEOUT_MS, 10000]
  --amqp-ca FICHERO            CA de RabbitMQ (amqps://)          [AMQP_CA_FILE, las del sistema]
  --database-ca FICHERO        CA de PostgreSQL (cifra y verifica) [DATABASE_CA_FILE]
  --help, -h, --ayuda          esta ayuda
  Los secretos (AMQP_URL, DATABASE_URL, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) también se leen de
  un fichero con <VARIABLE>_FILE; no los pase como opciones: \`deno task\` sin -q y \`ps\` los muestran.
  (detalles de cada opción: README.md, sección Configuración)`;

/**
 * Runs a server until SIGINT/SIGTERM, then drains it. It accepts the built-in task types and those of
 * the `--tareas` modules (their contracts only: the server never loads handler code).
 */
export async function runServer(
  config: ServerConfig,
  signingKey?: Uint8Array,
): Promise<void> {
  const tokens = await _authentication(config);
  const { catalog, modules } = await loadCatalog(config.tareas);
  const serverId = config.serverId ?? `srv-${crypto.randomUUID().slice(0, 8)}`;
  for (const loaded of modules) {
    log.info(
      `Tareas propias de ${loaded.path}: ${loaded.definitions.map((d) => d.name).join(", ")}`,
    );
  }
  const amqpCa = config.amqpCa === undefined
    ? undefined
    : await readPemFile(config.amqpCa, "la CA de RabbitMQ (--amqp-ca)");
  const store = await openTaskStore(config);
  const blobs = await openBlobStore(config);
  log.info(`Registros de tareas: ${describeStore(config)}; objetos: ${describeBlobStore(config)}`);
  log.info(
    signingKey === undefined
      ? "Mensajes con RabbitMQ sin firmar (sin --clave-firma-fichero)"
      : "Mensajes con RabbitMQ firmados (HMAC-SHA256): se rechaza lo que no lleve firma válida",
  );
  const stopPruning = schedulePruning(store, blobs, {
    retentionDays: config.retentionDays,
    intervalMs: config.pruneIntervalMs,
  });
  const server = new ColmenaServer(config, {
    serverId,
    store,
    blobs,
    catalog,
    ...(tokens === undefined ? {} : { tokens }),
    connectBroker: ({ onResults, onHeartbeat, batchLimit, bulkLimit }) =>
      connectServerBroker({
        url: config.amqpUrl,
        ca: amqpCa,
        taskQueue: config.taskQueue,
        resultQueue: config.resultQueue,
        queueType: config.queueType,
        serverId,
        signer: signingKey === undefined ? undefined : new MessageSigner(signingKey),
        taskTypes: catalog.names(),
        onResults,
        onHeartbeat,
        tasksPerMessage: config.tasksPerMessage,
        maxResultBytesInFlight: config.maxResultBytesInFlight,
        batchLimit,
        bulkLimit,
      }),
  });
  await server.start();
  const reason = await Promise.race([shutdownSignal(), server.brokerClosed()]);
  if (reason instanceof Error) {
    log.error("Se perdió RabbitMQ definitivamente; el servidor termina", reason);
    Deno.exit(1);
  }
  log.info(`Señal ${reason}: el servidor se apaga`);
  await server.drain();
  stopPruning();
  await store.close();
  await blobs.close();
  const s = server.stats;
  log.info(
    `Servidor detenido: ${s.accepted} tareas aceptadas, ${s.results} resultados, ${s.duplicates} duplicados descartados`,
  );
  log.flushLog();
}

/** The tokens of `--tokens`, or `undefined` without them (then only loopback, unless `--inseguro`). */
async function _authentication(config: ServerConfig): Promise<TokenRegistry | undefined> {
  if (config.tokens === undefined) {
    checkUnauthenticatedBind(config.host, config.inseguro);
    return undefined;
  }
  const tokens = await loadTokenRegistry(config.tokens);
  log.info(`Autenticación por token: ${tokens.size} tokens en ${config.tokens}`);
  return tokens;
}

if (import.meta.main) {
  exitOnHelp(Deno.args, USAGE);
  const { config, signingKey } = await loadRoleConfig("servidor", {
    args: Deno.args,
    env: readEnv(envNames("servidor")),
  });
  try {
    await runServer(config, signingKey);
  } catch (err) {
    exitOnTaskModuleError(err);
    if (err instanceof TokenFileError || err instanceof UnsafeBindError) {
      log.error(err.message);
      log.flushLog();
      Deno.exit(2);
    }
    if (err instanceof HttpAddrInUseError) {
      log.error(
        `El puerto HTTP ${config.http.port} ya está en uso en ${config.http.hostname} (use --http o --sin-http)`,
      );
      Deno.exit(1);
    }
    if (err instanceof Deno.errors.AddrInUse) {
      log.error(`El puerto ${config.port} ya está en uso en ${config.host}`);
      Deno.exit(1);
    }
    exitOnStartupError(err);
  }
}
