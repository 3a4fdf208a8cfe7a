/**
 * Typed configuration of each role, merged from flags, environment and defaults.
 *
 * Precedence: flag, then environment variable, then default. Defaults work on loopback. The function is pure:
 * only the entry files pass `Deno.args` and `Deno.env.toObject()`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { CLIENT_KINDS } from "./protocol.ts";
import { DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_LINE_BYTES } from "./framing.ts";
import { QUEUE_TYPES } from "./adapters/rabbitmq/names.ts";
import { describeExpected, describeProblem, suggest } from "./config_errors.ts";
import { REDACTED, redactUrl } from "./redact.ts";

/** The roles, by their Spanish command names. */
export type Role = "servidor" | "worker" | "cliente";

/** Where one field comes from: its environment variable and its flag. */
interface Source {
  readonly env: string;
  readonly flag: string;
  readonly short?: string;
  readonly boolean?: boolean;
  /** A list: the flag may repeat, and the environment variable holds comma-separated items. */
  readonly multiple?: boolean;
  /** What the field takes, in Spanish, when its schema cannot say it (`letras, cifras, _ . o -`). */
  readonly takes?: string;
  /**
   * A secret: never shown in an error (a URL is shown without its password), and also read from the file
   * that `<env>_FILE` names (see `shared/secrets.ts`).
   */
  readonly secret?: "url" | "value";
  /** Only from the environment (or `<env>_FILE`): a secret must not be typed on a command line. */
  readonly envOnly?: boolean;
}

/** Task modules to load (`--tareas`, repeatable; `COLMENA_TAREAS`, comma-separated). */
const taskModules = z.array(z.string().min(1)).default([]);

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const flag = z.union([z.boolean(), z.stringbool()]);
const amqpUrl = z.string().regex(/^amqps?:\/\//, "debe empezar por amqp:// o amqps://");
const queueName = z.string().min(1).max(200).regex(/^[A-Za-z0-9_.:-]+$/);
const queueType = z.enum(QUEUE_TYPES);
/** `host:puerto` (an IPv6 host in brackets), parsed into the options `Deno.serve` takes. */
const hostPort = z.string().regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/).refine(
  (v) => Number(v.slice(v.lastIndexOf(":") + 1)) <= 65535,
).transform((v) => {
  const at = v.lastIndexOf(":");
  return { hostname: v.slice(0, at).replace(/^\[(.*)\]$/, "$1"), port: Number(v.slice(at + 1)) };
});
const HOST_PORT_TAKES = "host:puerto, como localhost:8080 o 127.0.0.1:0 (puerto de 0 a 65535)";

/** Object storage settings, shared by the server and the worker (both store objects). */
const OBJECT_STORAGE = {
  dataDir: z.string().min(1).default("./data"),
  s3Endpoint: z.url().optional(),
  s3Bucket: z.string().min(3).max(63).optional(),
  s3Region: z.string().min(1).default("us-east-1"),
  s3Prefix: z.string().max(200).default(""),
  awsAccessKeyId: z.string().min(1).optional(),
  awsSecretAccessKey: z.string().min(1).optional(),
  awsSessionToken: z.string().min(1).optional(),
  claimCheckBytes: positiveInt.default(256 * 1024),
};

/** Message signing between servers and workers, shared by both (the same key on each). */
const MESSAGE_SIGNING = {
  signingKeyFile: z.string().min(1).optional(),
  signingKey: z.string().min(32, "debe tener al menos 32 caracteres").optional(),
};

/**
 * Server settings.
 *
 * - `host` — address to listen on. @defaultValue `"localhost"` · env `COLMENA_HOST` · `--host`
 * - `port` — TCP port; 0 picks a free one. @defaultValue `8888` · env `COLMENA_PORT` · `--port`
 * - `amqpUrl` — RabbitMQ URL. @defaultValue `"amqp://guest:guest@127.0.0.1:5672"` · env `AMQP_URL` · `--amqp-url`
 * - `taskQueue` — prefix of the task queues, one per task type (`<taskQueue>.<type>`). @defaultValue `"task_queue"` · env `COLMENA_TASK_QUEUE` · `--task-queue`
 * - `resultQueue` — queue of results. @defaultValue `"result_queue"` · env `COLMENA_RESULT_QUEUE` · `--result-queue`
 * - `queueType` — what the durable queues are: `classic` or `quorum` (replicated in a cluster; no priorities on RabbitMQ 3.x); servers and workers must agree. @defaultValue `"classic"` · env `COLMENA_QUEUE_TYPE` · `--queue-type`
 * - `serverId` — this server's id; unique per server process. @defaultValue random · env `COLMENA_SERVER_ID` · `--server-id`
 * - `maxLineBytes` — longest request line. @defaultValue `1048576` · env `COLMENA_MAX_LINE_BYTES` · `--max-line-bytes`
 * - `maxJsonDepth` — deepest JSON nesting. @defaultValue `64` · env `COLMENA_MAX_JSON_DEPTH` · `--max-json-depth`
 * - `maxConnections` — open connections at once. @defaultValue `10000` · env `COLMENA_MAX_CONNECTIONS` · `--max-connections`
 * - `maxPending` — unanswered requests per connection. @defaultValue `10000` · env `COLMENA_MAX_PENDING` · `--max-pending`
 * - `maxPendingBytes` — bytes of unanswered requests per connection past which it stops reading. @defaultValue `16777216` · env `COLMENA_MAX_PENDING_BYTES` · `--max-pending-bytes`
 * - `maxOutputBytes` — unsent bytes held per connection before it is dropped. @defaultValue `16777216` · env `COLMENA_MAX_OUTPUT_BYTES` · `--max-output-bytes`
 * - `writeTimeoutMs` — longest wait for one socket write. @defaultValue `30000` · env `COLMENA_WRITE_TIMEOUT_MS` · `--write-timeout-ms`
 * - `memoryMaxTasks` — task records kept in memory. @defaultValue `200000` · env `COLMENA_MEMORY_MAX_TASKS` · `--memory-max-tasks`
 * - `rateLimit` — requests per second per connection. @defaultValue `20000` · env `COLMENA_RATE_LIMIT` · `--rate-limit`
 * - `rateBurst` — requests a connection may save up. @defaultValue `40000` · env `COLMENA_RATE_BURST` · `--rate-burst`
 * - `idleTimeoutMs` — a connection with no request and nothing awaited is closed. @defaultValue `600000` · env `COLMENA_IDLE_TIMEOUT_MS` · `--idle-timeout-ms`
 * - `partialLineTimeoutMs` — longest time a line may stay incomplete. @defaultValue `60000` · env `COLMENA_PARTIAL_LINE_TIMEOUT_MS` · `--partial-line-timeout-ms`
 * - `publishRetryMs` — how long a submit whose confirm was lost waits for the broker to come back. @defaultValue `15000` · env `COLMENA_PUBLISH_RETRY_MS` · `--publish-retry-ms`
 * - `tasksPerMessage` — most tasks of one type and priority packed into one broker message (1: one message per task). @defaultValue `32` · env `COLMENA_TAREAS_POR_MENSAJE` · `--tareas-por-mensaje`
 * - `maxResultBytesInFlight` — bytes of result messages taken from RabbitMQ and not yet recorded and handed to their connections; past it the server takes no more until half has drained. @defaultValue `67108864` · env `COLMENA_MAX_RESULT_BYTES_IN_FLIGHT` · `--max-result-bytes-in-flight`
 * - `maxAttempts` — attempts of a task unless its submit says otherwise. @defaultValue `3` · env `COLMENA_MAX_ATTEMPTS` · `--max-attempts`
 * - `store` — where task records live: `sqlite`, `postgres` or `memory`. @defaultValue `postgres` with a `databaseUrl`, else `sqlite` · env `COLMENA_STORE` · `--store`
 * - `databaseUrl` — PostgreSQL URL. @defaultValue none · env `DATABASE_URL` · `--database-url`
 * - `dbSchema` — PostgreSQL schema of the tables, created when missing; servers that share one see the same tasks. @defaultValue `"public"` · env `COLMENA_DB_SCHEMA` · `--db-schema`
 * - `retentionDays` — finished records (and their objects) older than this are deleted. @defaultValue `7` · env `COLMENA_RETENTION_DAYS` · `--retention-days`
 * - `pruneIntervalMs` — how often old records are looked for, after the look at start-up. @defaultValue `3600000` · env `COLMENA_PRUNE_INTERVAL_MS` · `--prune-interval-ms`
 * - `maxUploadBytes` — largest file a client may upload. @defaultValue `268435456` · env `COLMENA_MAX_UPLOAD_BYTES` · `--max-upload-bytes`
 * - `maxConnectionsPerAddress` — open connections at once from one IP address. @defaultValue `1000` · env `COLMENA_MAX_CONNECTIONS_PER_ADDRESS` · `--max-connections-per-address`
 * - `maxUploadsPerConnection` — uploads open at once on one connection. @defaultValue `4` · env `COLMENA_MAX_UPLOADS_PER_CONNECTION` · `--max-uploads-per-connection`
 * - `maxUploads` — uploads open at once on the whole server. @defaultValue `256` · env `COLMENA_MAX_UPLOADS` · `--max-uploads`
 * - `quotaInFlight` — tasks of one `cliente` principal accepted by this server and not yet finished. @defaultValue `1000` · env `COLMENA_QUOTA_IN_FLIGHT` · `--quota-in-flight`
 * - `quotaSubmitRate` — submits per second of one `cliente` principal (twice as many may be saved up). @defaultValue `50` · env `COLMENA_QUOTA_SUBMIT_RATE` · `--quota-submit-rate`
 * - `quotaMaxPriority` — highest priority a `cliente` principal may ask for. @defaultValue `5` · env `COLMENA_QUOTA_MAX_PRIORITY` · `--quota-max-priority`
 * - `quotaBudgetMs` — most attempts × timeout one task of a `cliente` principal may ask for, in milliseconds. @defaultValue `600000` · env `COLMENA_QUOTA_BUDGET_MS` · `--quota-budget-ms`
 * - `quotaUploads` — uploads one `cliente` principal may start per hour. @defaultValue `100` · env `COLMENA_QUOTA_UPLOADS` · `--quota-uploads`
 * - `quotaUploadBytes` — bytes one `cliente` principal may upload per hour. @defaultValue `1073741824` · env `COLMENA_QUOTA_UPLOAD_BYTES` · `--quota-upload-bytes`
 * - `tareas` — task modules to load besides the built-in types. @defaultValue none · env `COLMENA_TAREAS` (comma-separated) · `--tareas` (repeatable)
 * - `http` — address of the HTTP listener (dashboard, browser client, `/healthz`, `/readyz`, `/metrics`), as `host:port`; port 0 picks a free one. @defaultValue `"localhost:8080"` · env `COLMENA_HTTP` · `--http`
 * - `sinHttp` — open no HTTP listener. @defaultValue `false` · env `COLMENA_SIN_HTTP` · `--sin-http`
 * - `drainDelayMs` — on SIGTERM, how long `/readyz` answers 503 while the server still serves, before it stops taking connections (time for a balancer's health checks to see it). @defaultValue `0` · env `COLMENA_DRAIN_DELAY_MS` · `--drain-delay-ms`
 * - `tokens` — file of access tokens (hashes only, made by `cliente token crear`); with it every connection must say `hello` with a valid token. @defaultValue none (no authentication; only allowed on loopback) · env `COLMENA_TOKENS_FILE` · `--tokens`
 * - `authTimeoutMs` — with tokens, how long a new connection has to send a valid `hello` before it is closed. @defaultValue `10000` · env `COLMENA_AUTH_TIMEOUT_MS` · `--auth-timeout-ms`
 * - `inseguro` — let a server without tokens listen on an address other than loopback (warned at every start). @defaultValue `false` · env `COLMENA_INSEGURO` · `--inseguro`
 * - `tlsCert` — the server's certificate chain (PEM file); with `tlsKey`, clients must speak TLS 1.2 or later. @defaultValue none (plain TCP) · env `COLMENA_TLS_CERT` · `--tls-cert`
 * - `tlsKey` — the private key of `tlsCert` (PEM file). @defaultValue none · env `COLMENA_TLS_KEY` · `--tls-key`
 * - `tlsCaClientes` — CA (PEM file) that signs client certificates: set, every client must present one, and its subject CN becomes the connection's principal (role `cliente`). @defaultValue none · env `COLMENA_TLS_CA_CLIENTES` · `--tls-ca-clientes`
 * - `tlsHandshakeTimeoutMs` — a TLS handshake not finished by then is dropped. @defaultValue `10000` · env `COLMENA_TLS_HANDSHAKE_TIMEOUT_MS` · `--tls-handshake-timeout-ms`
 * - `amqpCa` — CA (PEM file) that signs RabbitMQ's certificate, for an `amqps://` URL. @defaultValue the system's CAs · env `AMQP_CA_FILE` · `--amqp-ca`
 * - `databaseCa` — CA (PEM file) that signs PostgreSQL's certificate: the connection uses TLS and checks it (as `sslrootcert` in the URL; `sslmode` in `databaseUrl` still applies). @defaultValue none · env `DATABASE_CA_FILE` · `--database-ca`
 * - storage of objects and message signing, as for the worker below.
 */
export const ServerConfig = z.object({
  host: z.string().min(1).default("localhost"),
  port: port.default(8888),
  amqpUrl: amqpUrl.default("amqp://guest:guest@127.0.0.1:5672"),
  taskQueue: queueName.default("task_queue"),
  resultQueue: queueName.default("result_queue"),
  queueType: queueType.default("classic"),
  serverId: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  maxLineBytes: positiveInt.default(DEFAULT_MAX_LINE_BYTES),
  maxJsonDepth: positiveInt.max(1000).default(DEFAULT_MAX_JSON_DEPTH),
  maxConnections: positiveInt.default(10_000),
  maxPending: positiveInt.default(10_000),
  maxPendingBytes: positiveInt.default(16 * 1024 * 1024),
  maxOutputBytes: positiveInt.default(16 * 1024 * 1024),
  writeTimeoutMs: positiveInt.default(30_000),
  memoryMaxTasks: positiveInt.default(200_000),
  rateLimit: positiveInt.default(20_000),
  rateBurst: positiveInt.default(40_000),
  idleTimeoutMs: positiveInt.default(600_000),
  partialLineTimeoutMs: positiveInt.default(60_000),
  publishRetryMs: z.coerce.number().int().min(0).default(15_000),
  tasksPerMessage: positiveInt.max(1_000).default(32),
  maxResultBytesInFlight: positiveInt.default(64 * 1024 * 1024),
  maxAttempts: positiveInt.max(20).default(3),
  store: z.enum(["sqlite", "postgres", "memory"]).optional(),
  databaseUrl: z.string().regex(/^postgres(ql)?:\/\//, "debe empezar por postgres://").optional(),
  dbSchema: z.string().regex(
    /^[a-z_][a-z0-9_]{0,62}$/,
    "debe ser un identificador: minúsculas, cifras y _, como mucho 63",
  ).default("public"),
  retentionDays: z.coerce.number().positive().default(7),
  pruneIntervalMs: positiveInt.min(100).max(2_147_483_647).default(3_600_000),
  maxUploadBytes: positiveInt.default(256 * 1024 * 1024),
  maxConnectionsPerAddress: positiveInt.default(1_000),
  maxUploadsPerConnection: positiveInt.default(4),
  maxUploads: positiveInt.default(256),
  quotaInFlight: positiveInt.default(1_000),
  quotaSubmitRate: positiveInt.default(50),
  quotaMaxPriority: z.coerce.number().int().min(0).max(9).default(5),
  quotaBudgetMs: positiveInt.default(600_000),
  quotaUploads: positiveInt.default(100),
  quotaUploadBytes: positiveInt.default(1024 * 1024 * 1024),
  tareas: taskModules,
  http: hostPort.default({ hostname: "localhost", port: 8080 }),
  sinHttp: flag.default(false),
  drainDelayMs: z.coerce.number().int().min(0).max(600_000).default(0),
  tokens: z.string().min(1).optional(),
  authTimeoutMs: positiveInt.default(10_000),
  inseguro: flag.default(false),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  tlsCaClientes: z.string().min(1).optional(),
  tlsHandshakeTimeoutMs: positiveInt.max(600_000).default(10_000),
  amqpCa: z.string().min(1).optional(),
  databaseCa: z.string().min(1).optional(),
  ...OBJECT_STORAGE,
  ...MESSAGE_SIGNING,
}).superRefine((config, ctx) => {
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: [config.tlsCert === undefined ? "tlsCert" : "tlsKey"],
      message: "--tls-cert y --tls-key van juntos: indique los dos",
    });
  }
  if (config.tlsCaClientes !== undefined && config.tlsCert === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["tlsCaClientes"],
      message: "TLS mutuo necesita TLS: indique también --tls-cert y --tls-key",
    });
  }
});

/** Server settings, as parsed. */
export type ServerConfig = Readonly<z.output<typeof ServerConfig>>;

/**
 * Worker settings.
 *
 * - `name` — the worker's name, first positional argument. @defaultValue `worker-<pid>` · env `COLMENA_WORKER_NAME`
 * - `amqpUrl`, `taskQueue`, `resultQueue`, `queueType`, `amqpCa` — as for the server.
 * - `concurrency` — tasks held at once (the prefetch). @defaultValue `100` · env `COLMENA_CONCURRENCY` · `--concurrency`
 * - `quiet` — print no line per task. @defaultValue `false` · env `COLMENA_QUIET` · `--quiet`
 * - `retryBaseMs` — wait before a 2nd attempt, doubled for each later one. @defaultValue `1000` · env `COLMENA_RETRY_BASE_MS` · `--retry-base-ms`
 * - `maxDeliveries` — deliveries of one attempt (its worker died) before the task fails. @defaultValue `5` · env `COLMENA_MAX_DELIVERIES` · `--max-deliveries`
 * - `heartbeatMs` — interval of the worker's heartbeats. @defaultValue `5000` · env `COLMENA_HEARTBEAT_MS` · `--heartbeat-ms`
 * - `drainTimeoutMs` — wait for tasks in progress at shutdown before handing them back. @defaultValue `30000` · env `COLMENA_DRAIN_TIMEOUT_MS` · `--drain-timeout-ms`
 * - `dataDir` — folder of the SQLite file and of objects when there is no S3. @defaultValue `"./data"` · env `COLMENA_DATA_DIR` · `--data-dir`
 * - `s3Endpoint`, `s3Bucket`, `s3Region`, `s3Prefix` — an S3-compatible store for objects, used when a bucket is set. · env `S3_ENDPOINT`, `S3_BUCKET`, `S3_REGION` (`us-east-1`), `S3_PREFIX`
 * - `awsAccessKeyId`, `awsSecretAccessKey`, `awsSessionToken` — S3 credentials. · env `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`
 * - `signingKeyFile` — a file holding the shared key that signs and checks every message between servers and workers (HMAC-SHA256, at least 32 bytes). @defaultValue none: messages are not signed · env `COLMENA_SIGNING_KEY_FILE` · `--clave-firma-fichero`
 * - `signingKey` — the same key, given in the environment only (never as a flag). @defaultValue none · env `COLMENA_SIGNING_KEY`
 * - `amqpUrl`, `databaseUrl`, `awsSecretAccessKey`, `awsSessionToken`, `signingKey` — also read from the file that `<env>_FILE` names (`AMQP_URL_FILE`…).
 * - `claimCheckBytes` — payloads and outputs larger than this travel as objects, not through RabbitMQ. @defaultValue `262144` · env `COLMENA_CLAIM_CHECK_BYTES` · `--claim-check-bytes`
 * - `tareas` — task modules to load besides the built-in types. @defaultValue none · env `COLMENA_TAREAS` (comma-separated) · `--tareas` (repeatable)
 * - `solo` — run only these task types (names, comma-separated). @defaultValue every loaded type · env `COLMENA_SOLO` · `--solo`
 * - `memoriaTareaMb` — heap cap of each thread that runs isolated handlers, in MiB; a task that goes over it fails with `MEMORY_EXCEEDED`. @defaultValue `512` · env `COLMENA_MEMORIA_TAREA_MB` · `--memoria-tarea-mb`
 */
export const WorkerConfig = z.object({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  amqpUrl: amqpUrl.default("amqp://guest:guest@127.0.0.1:5672"),
  taskQueue: queueName.default("task_queue"),
  resultQueue: queueName.default("result_queue"),
  queueType: queueType.default("classic"),
  concurrency: positiveInt.max(10_000).default(100),
  quiet: flag.default(false),
  retryBaseMs: positiveInt.max(300_000).default(1_000),
  maxDeliveries: positiveInt.max(100).default(5),
  heartbeatMs: positiveInt.min(100).default(5_000),
  drainTimeoutMs: z.coerce.number().int().min(0).default(30_000),
  tareas: taskModules,
  solo: z.array(z.string().min(1)).optional(),
  memoriaTareaMb: positiveInt.min(16).max(65_536).default(512),
  amqpCa: z.string().min(1).optional(),
  ...OBJECT_STORAGE,
  ...MESSAGE_SIGNING,
});

/** Worker settings, as parsed. */
export type WorkerConfig = Readonly<z.output<typeof WorkerConfig>>;

/**
 * Client settings.
 *
 * - `host`, `port` — the server to connect to. @defaultValue `localhost:8888` · env `COLMENA_HOST`, `COLMENA_PORT`
 * - `kind` — the client's kind. @defaultValue `"cli"` · env `COLMENA_CLIENT_KIND` · `--tipo-cliente`
 * - `name` — the client's name. @defaultValue `"cliente"` · env `COLMENA_CLIENT_NAME` · `--nombre`
 * - `token` — access token sent in `hello`, needed by a server with `--tokens`. @defaultValue none · env `COLMENA_TOKEN` · `--token`
 * - `tokens` — `token crear|listar|revocar`: the server's tokens file (read by `client/token_command.ts` before this schema). @defaultValue none · env `COLMENA_TOKENS_FILE` · `--tokens`
 * - `json` — print JSON for scripts. @defaultValue `false` · `--json`
 * - `clientes`, `numTareas`, `tipos`, `tareasTipos` — options of `simular` (`--clientes`, `--num-tareas`, `--tipos`, `--tareas-tipos`).
 * - `datos` — `enviar`: the payload as JSON, for any task type. @defaultValue none · env `COLMENA_DATOS` · `--datos`
 * - `jsonSchema` — `tipos`: print each type's input and output as JSON Schema. @defaultValue `false` · `--json-schema`
 * - `tareas` — task modules to load besides the built-in types. @defaultValue none · env `COLMENA_TAREAS` (comma-separated) · `--tareas` (repeatable)
 * - `prioridad` — priority of `enviar`. @defaultValue `0` · `--prioridad`
 * - `estado` — `historial`: states to show, comma-separated (English or Spanish). @defaultValue all · env `COLMENA_HIST_ESTADO` · `--estado`
 * - `tipoTarea` — `historial`: one task type to show. @defaultValue all · env `COLMENA_HIST_TIPO_TAREA` · `--tipo-tarea`
 * - `deTipo` — `historial`: one client kind to show (`web`, `movil`, `cli`). @defaultValue all · env `COLMENA_HIST_DE_TIPO` · `--de-tipo`
 * - `desde` — `historial`: submitted at or after this ISO 8601 time or span ago (`2h`). @defaultValue none · env `COLMENA_HIST_DESDE` · `--desde`
 * - `hasta` — `historial`: submitted before this ISO 8601 time or span ago (`30m`). @defaultValue none · env `COLMENA_HIST_HASTA` · `--hasta`
 * - `limite` — page size of `historial` (1–500) and of `dlq` (1–1000). @defaultValue `20` (`historial --todas`: `500`) · env `COLMENA_LIMITE` · `--limite`
 * - `cursor` — `historial`: continue after the page that printed this cursor. @defaultValue none · env `COLMENA_HIST_CURSOR` · `--cursor`
 * - `todas` — `historial`: follow the pages to the end (at most 100). @defaultValue `false` · env `COLMENA_HIST_TODAS` · `--todas`
 * - `archivo` — `enviar texto|hash`: a file whose UTF-8 text is the task's text or data, uploaded in pieces. @defaultValue none · env `COLMENA_ARCHIVO` · `--archivo`
 * - `salida` — `enviar`: a file to write the task's whole output to, as JSON. @defaultValue none · env `COLMENA_SALIDA` · `--salida`
 * - `intentos` — `enviar`: attempts of the task before it fails for good and goes to the dead-letter queue. @defaultValue the server's `maxAttempts` · env `COLMENA_INTENTOS` · `--intentos`
 * - `timeoutMs` — `enviar`: how long one attempt may run, in milliseconds. @defaultValue per task type · env `COLMENA_TIMEOUT_MS` · `--timeout-ms`
 * - `tls` — connect with TLS (implied by `ca`, `cert` or `key`). @defaultValue `false` · env `COLMENA_TLS` · `--tls`
 * - `ca` — CA (PEM file) that signs the server's certificate. @defaultValue the system's CAs · env `COLMENA_CA` · `--ca`
 * - `cert` — the client's certificate (PEM file), for a server with mutual TLS. @defaultValue none · env `COLMENA_CERT` · `--cert`
 * - `key` — the private key of `cert` (PEM file). @defaultValue none · env `COLMENA_KEY` · `--key`
 */
export const ClientConfig = z.object({
  host: z.string().min(1).default("localhost"),
  port: port.default(8888),
  kind: z.preprocess(
    (v) => (v === "movil" || v === "móvil" ? "mobile" : v),
    z.enum(CLIENT_KINDS),
  ).default("cli"),
  name: z.string().min(1).max(100).default("cliente"),
  token: z.string().min(1).max(200).optional(),
  tokens: z.string().min(1).optional(),
  json: flag.default(false),
  clientes: positiveInt.max(10_000).default(10),
  numTareas: positiveInt.max(10_000_000).default(200),
  tipos: z.string().default("cli"),
  tareasTipos: z.string().optional(),
  prioridad: z.coerce.number().int().min(0).max(9).default(0),
  estado: z.string().optional(),
  tipoTarea: z.string().optional(),
  deTipo: z.string().optional(),
  desde: z.string().optional(),
  hasta: z.string().optional(),
  limite: positiveInt.max(1_000).optional(),
  cursor: z.string().min(1).max(500).optional(),
  todas: flag.default(false),
  archivo: z.string().min(1).optional(),
  salida: z.string().min(1).optional(),
  intentos: positiveInt.max(20).optional(),
  timeoutMs: positiveInt.max(3_600_000).optional(),
  datos: z.string().optional(),
  jsonSchema: flag.default(false),
  tareas: taskModules,
  tls: flag.default(false),
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
}).superRefine((config, ctx) => {
  if ((config.cert === undefined) !== (config.key === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: [config.cert === undefined ? "cert" : "key"],
      message: "--cert y --key van juntos: indique los dos",
    });
  }
});

/** Client settings, as parsed. */
export type ClientConfig = Readonly<z.output<typeof ClientConfig>>;

const SCHEMAS = { servidor: ServerConfig, worker: WorkerConfig, cliente: ClientConfig } as const;

const OBJECT_STORAGE_SOURCES: Record<keyof typeof OBJECT_STORAGE, Source> = {
  dataDir: { env: "COLMENA_DATA_DIR", flag: "data-dir" },
  s3Endpoint: { env: "S3_ENDPOINT", flag: "s3-endpoint" },
  s3Bucket: { env: "S3_BUCKET", flag: "s3-bucket" },
  s3Region: { env: "S3_REGION", flag: "s3-region" },
  s3Prefix: { env: "S3_PREFIX", flag: "s3-prefix" },
  awsAccessKeyId: { env: "AWS_ACCESS_KEY_ID", flag: "aws-access-key-id" },
  awsSecretAccessKey: {
    env: "AWS_SECRET_ACCESS_KEY",
    flag: "aws-secret-access-key",
    secret: "value",
  },
  awsSessionToken: { env: "AWS_SESSION_TOKEN", flag: "aws-session-token", secret: "value" },
  claimCheckBytes: { env: "COLMENA_CLAIM_CHECK_BYTES", flag: "claim-check-bytes" },
};

const MESSAGE_SIGNING_SOURCES: Record<keyof typeof MESSAGE_SIGNING, Source> = {
  signingKeyFile: { env: "COLMENA_SIGNING_KEY_FILE", flag: "clave-firma-fichero" },
  signingKey: {
    env: "COLMENA_SIGNING_KEY",
    flag: "clave-firma",
    secret: "value",
    envOnly: true,
  },
};

/** What `--limite` takes: one sentence for the option, whichever subcommand checks it. */
export const LIMITE_TAKES = "un entero de 1 a 500 (historial) o de 1 a 1000 (dlq)";

const NAME_TAKES = "un nombre de 1 a 64 letras sin acentos, cifras, «_», «.» o «-»";
const QUEUE_TAKES = "un nombre de cola de 1 a 200 letras sin acentos, cifras, «_», «.», «:» o «-»";

const TASK_MODULES_SOURCE: Source = { env: "COLMENA_TAREAS", flag: "tareas", multiple: true };

const SOURCES: { [R in Role]: Record<string, Source> } = {
  servidor: {
    host: { env: "COLMENA_HOST", flag: "host" },
    port: { env: "COLMENA_PORT", flag: "port", short: "p" },
    amqpUrl: { env: "AMQP_URL", flag: "amqp-url", secret: "url" },
    taskQueue: { env: "COLMENA_TASK_QUEUE", flag: "task-queue", takes: QUEUE_TAKES },
    resultQueue: { env: "COLMENA_RESULT_QUEUE", flag: "result-queue", takes: QUEUE_TAKES },
    queueType: { env: "COLMENA_QUEUE_TYPE", flag: "queue-type" },
    serverId: { env: "COLMENA_SERVER_ID", flag: "server-id", takes: NAME_TAKES },
    maxLineBytes: { env: "COLMENA_MAX_LINE_BYTES", flag: "max-line-bytes" },
    maxJsonDepth: { env: "COLMENA_MAX_JSON_DEPTH", flag: "max-json-depth" },
    maxConnections: { env: "COLMENA_MAX_CONNECTIONS", flag: "max-connections" },
    maxPending: { env: "COLMENA_MAX_PENDING", flag: "max-pending" },
    maxPendingBytes: { env: "COLMENA_MAX_PENDING_BYTES", flag: "max-pending-bytes" },
    maxOutputBytes: { env: "COLMENA_MAX_OUTPUT_BYTES", flag: "max-output-bytes" },
    writeTimeoutMs: { env: "COLMENA_WRITE_TIMEOUT_MS", flag: "write-timeout-ms" },
    memoryMaxTasks: { env: "COLMENA_MEMORY_MAX_TASKS", flag: "memory-max-tasks" },
    rateLimit: { env: "COLMENA_RATE_LIMIT", flag: "rate-limit" },
    rateBurst: { env: "COLMENA_RATE_BURST", flag: "rate-burst" },
    idleTimeoutMs: { env: "COLMENA_IDLE_TIMEOUT_MS", flag: "idle-timeout-ms" },
    partialLineTimeoutMs: {
      env: "COLMENA_PARTIAL_LINE_TIMEOUT_MS",
      flag: "partial-line-timeout-ms",
    },
    publishRetryMs: { env: "COLMENA_PUBLISH_RETRY_MS", flag: "publish-retry-ms" },
    tasksPerMessage: { env: "COLMENA_TAREAS_POR_MENSAJE", flag: "tareas-por-mensaje" },
    maxResultBytesInFlight: {
      env: "COLMENA_MAX_RESULT_BYTES_IN_FLIGHT",
      flag: "max-result-bytes-in-flight",
    },
    maxAttempts: { env: "COLMENA_MAX_ATTEMPTS", flag: "max-attempts" },
    store: { env: "COLMENA_STORE", flag: "store" },
    databaseUrl: { env: "DATABASE_URL", flag: "database-url", secret: "url" },
    dbSchema: { env: "COLMENA_DB_SCHEMA", flag: "db-schema" },
    retentionDays: { env: "COLMENA_RETENTION_DAYS", flag: "retention-days" },
    pruneIntervalMs: { env: "COLMENA_PRUNE_INTERVAL_MS", flag: "prune-interval-ms" },
    maxUploadBytes: { env: "COLMENA_MAX_UPLOAD_BYTES", flag: "max-upload-bytes" },
    maxConnectionsPerAddress: {
      env: "COLMENA_MAX_CONNECTIONS_PER_ADDRESS",
      flag: "max-connections-per-address",
    },
    maxUploadsPerConnection: {
      env: "COLMENA_MAX_UPLOADS_PER_CONNECTION",
      flag: "max-uploads-per-connection",
    },
    maxUploads: { env: "COLMENA_MAX_UPLOADS", flag: "max-uploads" },
    quotaInFlight: { env: "COLMENA_QUOTA_IN_FLIGHT", flag: "quota-in-flight" },
    quotaSubmitRate: { env: "COLMENA_QUOTA_SUBMIT_RATE", flag: "quota-submit-rate" },
    quotaMaxPriority: { env: "COLMENA_QUOTA_MAX_PRIORITY", flag: "quota-max-priority" },
    quotaBudgetMs: { env: "COLMENA_QUOTA_BUDGET_MS", flag: "quota-budget-ms" },
    quotaUploads: { env: "COLMENA_QUOTA_UPLOADS", flag: "quota-uploads" },
    quotaUploadBytes: { env: "COLMENA_QUOTA_UPLOAD_BYTES", flag: "quota-upload-bytes" },
    tareas: TASK_MODULES_SOURCE,
    http: { env: "COLMENA_HTTP", flag: "http", takes: HOST_PORT_TAKES },
    sinHttp: { env: "COLMENA_SIN_HTTP", flag: "sin-http", boolean: true },
    drainDelayMs: { env: "COLMENA_DRAIN_DELAY_MS", flag: "drain-delay-ms" },
    tokens: { env: "COLMENA_TOKENS_FILE", flag: "tokens" },
    authTimeoutMs: { env: "COLMENA_AUTH_TIMEOUT_MS", flag: "auth-timeout-ms" },
    inseguro: { env: "COLMENA_INSEGURO", flag: "inseguro", boolean: true },
    tlsCert: { env: "COLMENA_TLS_CERT", flag: "tls-cert" },
    tlsKey: { env: "COLMENA_TLS_KEY", flag: "tls-key" },
    tlsCaClientes: { env: "COLMENA_TLS_CA_CLIENTES", flag: "tls-ca-clientes" },
    tlsHandshakeTimeoutMs: {
      env: "COLMENA_TLS_HANDSHAKE_TIMEOUT_MS",
      flag: "tls-handshake-timeout-ms",
    },
    amqpCa: { env: "AMQP_CA_FILE", flag: "amqp-ca" },
    databaseCa: { env: "DATABASE_CA_FILE", flag: "database-ca" },
    ...OBJECT_STORAGE_SOURCES,
    ...MESSAGE_SIGNING_SOURCES,
  },
  worker: {
    name: { env: "COLMENA_WORKER_NAME", flag: "name", takes: NAME_TAKES },
    amqpUrl: { env: "AMQP_URL", flag: "amqp-url", secret: "url" },
    taskQueue: { env: "COLMENA_TASK_QUEUE", flag: "task-queue", takes: QUEUE_TAKES },
    resultQueue: { env: "COLMENA_RESULT_QUEUE", flag: "result-queue", takes: QUEUE_TAKES },
    queueType: { env: "COLMENA_QUEUE_TYPE", flag: "queue-type" },
    concurrency: { env: "COLMENA_CONCURRENCY", flag: "concurrency", short: "c" },
    quiet: { env: "COLMENA_QUIET", flag: "quiet", short: "q", boolean: true },
    retryBaseMs: { env: "COLMENA_RETRY_BASE_MS", flag: "retry-base-ms" },
    maxDeliveries: { env: "COLMENA_MAX_DELIVERIES", flag: "max-deliveries" },
    heartbeatMs: { env: "COLMENA_HEARTBEAT_MS", flag: "heartbeat-ms" },
    drainTimeoutMs: { env: "COLMENA_DRAIN_TIMEOUT_MS", flag: "drain-timeout-ms" },
    tareas: TASK_MODULES_SOURCE,
    solo: { env: "COLMENA_SOLO", flag: "solo", multiple: true },
    memoriaTareaMb: { env: "COLMENA_MEMORIA_TAREA_MB", flag: "memoria-tarea-mb" },
    amqpCa: { env: "AMQP_CA_FILE", flag: "amqp-ca" },
    ...OBJECT_STORAGE_SOURCES,
    ...MESSAGE_SIGNING_SOURCES,
  },
  cliente: {
    host: { env: "COLMENA_HOST", flag: "host" },
    port: { env: "COLMENA_PORT", flag: "port", short: "p" },
    kind: { env: "COLMENA_CLIENT_KIND", flag: "tipo-cliente" },
    name: { env: "COLMENA_CLIENT_NAME", flag: "nombre" },
    token: { env: "COLMENA_TOKEN", flag: "token" },
    tokens: { env: "COLMENA_TOKENS_FILE", flag: "tokens" },
    json: { env: "COLMENA_JSON", flag: "json", boolean: true },
    clientes: { env: "COLMENA_SIM_CLIENTES", flag: "clientes" },
    numTareas: { env: "COLMENA_SIM_TAREAS", flag: "num-tareas" },
    tipos: { env: "COLMENA_SIM_TIPOS", flag: "tipos" },
    tareasTipos: { env: "COLMENA_SIM_TAREAS_TIPOS", flag: "tareas-tipos" },
    prioridad: { env: "COLMENA_PRIORIDAD", flag: "prioridad" },
    estado: { env: "COLMENA_HIST_ESTADO", flag: "estado" },
    tipoTarea: { env: "COLMENA_HIST_TIPO_TAREA", flag: "tipo-tarea" },
    deTipo: { env: "COLMENA_HIST_DE_TIPO", flag: "de-tipo" },
    desde: { env: "COLMENA_HIST_DESDE", flag: "desde" },
    hasta: { env: "COLMENA_HIST_HASTA", flag: "hasta" },
    limite: { env: "COLMENA_LIMITE", flag: "limite", takes: LIMITE_TAKES },
    cursor: { env: "COLMENA_HIST_CURSOR", flag: "cursor" },
    todas: { env: "COLMENA_HIST_TODAS", flag: "todas", boolean: true },
    archivo: { env: "COLMENA_ARCHIVO", flag: "archivo" },
    salida: { env: "COLMENA_SALIDA", flag: "salida" },
    intentos: { env: "COLMENA_INTENTOS", flag: "intentos" },
    timeoutMs: { env: "COLMENA_TIMEOUT_MS", flag: "timeout-ms" },
    datos: { env: "COLMENA_DATOS", flag: "datos" },
    jsonSchema: { env: "COLMENA_JSON_SCHEMA", flag: "json-schema", boolean: true },
    tareas: TASK_MODULES_SOURCE,
    tls: { env: "COLMENA_TLS", flag: "tls", boolean: true },
    ca: { env: "COLMENA_CA", flag: "ca" },
    cert: { env: "COLMENA_CERT", flag: "cert" },
    key: { env: "COLMENA_KEY", flag: "key" },
  },
};

/** The environment variables each role reads, for `--allow-env` lists and docs. */
export function envNames(role: Role): string[] {
  return [
    ...new Set([...Object.values(SOURCES[role]).map((s) => s.env), ...secretFileEnvNames(role)]),
  ];
}

/**
 * The environment variables of a role that hold secrets and may instead name a file holding them
 * (`AMQP_URL` and `AMQP_URL_FILE`…), as `[variable, file variable]` pairs. A secret whose `_FILE` name is an
 * option of its own (`COLMENA_SIGNING_KEY_FILE`, `--clave-firma-fichero`) is read by that option instead.
 */
export function secretFileEnvPairs(role: Role): [string, string][] {
  const sources = Object.values(SOURCES[role]);
  const envs = new Set(sources.map((s) => s.env));
  return sources.filter((s) => s.secret !== undefined && !envs.has(`${s.env}_FILE`))
    .map((s) => [s.env, `${s.env}_FILE`]);
}

function secretFileEnvNames(role: Role): string[] {
  return secretFileEnvPairs(role).map(([, file]) => file);
}

/** The flags of a role whose values are secrets (`--amqp-url`, `--aws-secret-access-key`…). */
export function secretFlags(role: Role): { flag: string; env: string; kind: "url" | "value" }[] {
  return Object.values(SOURCES[role]).flatMap((s) =>
    s.secret === undefined || s.envOnly ? [] : [{ flag: s.flag, env: s.env, kind: s.secret }]
  );
}

/** The configuration of each role, with the command line's positional arguments. */
export type ConfigOf<R extends Role> =
  & (R extends "servidor" ? ServerConfig : R extends "worker" ? WorkerConfig : ClientConfig)
  & { readonly positionals: readonly string[] };

/** Where configuration is read from. */
export interface ConfigInput {
  /** Command-line arguments, without the program name. */
  args: readonly string[];
  /** Environment variables; unset ones may be absent or `undefined`. */
  env: Readonly<Record<string, string | undefined>>;
}

/** Thrown by {@linkcode loadConfig} with every problem listed in Spanish. */
export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/**
 * Loads the configuration of one role: flag, then environment variable, then default, validated at once.
 *
 * For the worker, the first positional argument is its name.
 *
 * @example
 * ```ts
 * const config = loadConfig("servidor", { args: ["--port", "0"], env: {} });
 * config.port; // 0
 * config.host; // "localhost"
 * ```
 * @throws {ConfigError} listing every invalid or unknown setting, in Spanish.
 */
export function loadConfig<R extends Role>(role: R, input: ConfigInput): ConfigOf<R> {
  const sources = SOURCES[role];
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = {};
  for (const source of Object.values(sources)) {
    if (source.envOnly) continue;
    options[source.flag] = {
      type: source.boolean ? "boolean" : "string",
      ...(source.short === undefined ? {} : { short: source.short }),
      ...(source.multiple ? { multiple: true } : {}),
    };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...input.args],
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (cause) {
    const flags = Object.values(sources).flatMap((s) => s.envOnly ? [] : [`--${s.flag}`]);
    throw new ConfigError(`Argumento no válido: ${describeArgError(cause, flags)}`, { cause });
  }
  const merged: Record<string, unknown> = {};
  /** Where each merged value came from, as a person typed it: the flag, or the variable. */
  const origin: Record<string, string> = {};
  for (const [key, source] of Object.entries(sources)) {
    let fromFlag = source.envOnly ? undefined : parsed.values[source.flag];
    let fromEnv: unknown = input.env[source.env];
    if (source.multiple) {
      // Lists: repeated flags and comma-separated items both split at commas.
      const split = (items: string[]) => items.flatMap((v) => v.split(",")).map((v) => v.trim());
      if (Array.isArray(fromFlag)) fromFlag = split(fromFlag.map(String)).filter((v) => v !== "");
      if (typeof fromEnv === "string") fromEnv = split([fromEnv]).filter((v) => v !== "");
    }
    if (fromFlag !== undefined) {
      merged[key] = fromFlag;
      origin[key] = `--${source.flag}`;
    } else if (fromEnv !== undefined && fromEnv !== "") {
      merged[key] = fromEnv;
      origin[key] = source.env;
    }
  }
  const positionals = [...parsed.positionals];
  // The worker's name on the command line ranks with its flag, above the environment.
  if (role === "worker" && positionals.length > 0 && parsed.values["name"] === undefined) {
    merged.name = positionals[0];
    origin.name = "El nombre del worker";
  }
  const schema = SCHEMAS[role];
  const result = schema.safeParse(merged);
  if (!result.success) {
    const seen = new Set<string>();
    const lines: string[] = [];
    for (const issue of result.error.issues) {
      const key = String(issue.path[0] ?? "");
      // One sentence per option, however many checks its value failed.
      if (seen.has(key)) continue;
      seen.add(key);
      const source = sources[key];
      const field = (schema.shape as Record<string, z.ZodType>)[key];
      const where = origin[key] ?? (source ? `--${source.flag}` : key);
      const value = merged[key];
      lines.push(describeProblem(where, {
        value: typeof value !== "string" || source?.secret === undefined
          ? value
          : source.secret === "url"
          ? redactUrl(value)
          : REDACTED,
        takes: source?.takes ?? (field === undefined ? undefined : describeExpected(field)),
        issue: issue.message,
      }));
    }
    throw new ConfigError(lines.join("\n"), { cause: result.error });
  }
  return Object.freeze({
    ...result.data,
    positionals: Object.freeze(positionals),
  }) as unknown as ConfigOf<
    R
  >;
}

/** Spanish wording of `parseArgs` failures (its own text is English). */
function describeArgError(cause: unknown, flags: readonly string[]): string {
  const code = (cause as { code?: unknown })?.code;
  const text = cause instanceof Error ? cause.message : String(cause);
  const option = text.match(/'(-[^'\s]*)/)?.[1] ?? "";
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION": {
      const near = option.startsWith("--") ? suggest(option, flags) : undefined;
      return `opción desconocida ${option}`.trim() +
        (near === undefined ? "" : `. ¿Quería decir «${near}»?`);
    }
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return `la opción ${option} necesita un valor, o no lo admite`.replace("  ", " ");
    default:
      return "no se pudieron leer las opciones";
  }
}
