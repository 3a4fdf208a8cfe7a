// deno-lint-ignore-file no-console
// A command-line measuring tool: its progress (stderr) and its report (stdout) are its whole interface, so
// it writes to the console directly instead of through shared/log.ts.
/**
 * `deno task bench`: measures colmena end to end against the raw amqplib round trip, in the same run.
 *
 * colmena: the real `server.ts` and K `worker.ts` processes on unique queues, one server (with its workers)
 * per task store asked for with `--almacen` (memory, SQLite, PostgreSQL); C raw TCP clients each keep W
 * `submit` frames in flight, and a task is done when its `result` push arrives. Raw baseline
 * (`crudo`): the same tasks published straight to RabbitMQ with the same durability (durable queues,
 * persistent messages, publisher confirms, manual acks), worked by K `bench/raw_worker.ts` processes, with
 * W×C in flight. BullMQ (`bullmq`), colmena's nearest TypeScript peer: the same task specs added as jobs
 * to a queue on the local Redis, worked by K `bench/bullmq_worker.ts` processes with concurrency P, W×C in
 * flight, plus a separate `addBulk` measure (one client, bulks of 1000); skipped when Redis cannot be
 * reached or with `--sin-bullmq`. Its colmena counterpart, measured with every colmena run: one
 * `TaskClient.submitMany`, bulks of 1000, to a SQLite server of its own with no worker. Rounds of every side alternate; the report gives medians over the
 * repetitions, the ratios colmena/crudo and colmena/BullMQ, and each store's ratio to the in-memory one.
 * Every queue it declares is deleted at the end (BullMQ's with `obliterate`), every child process is
 * stopped, and the SQLite folder and PostgreSQL schema of the run are removed.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { wantsHelp } from "../shared/help.ts";
import { dropPostgresSchema } from "../server/stores/postgres.ts";
import { measureSubmitMany, runColmenaRound } from "./colmena_load.ts";
import {
  ChildProcess,
  clockTicksPerSecond,
  findBrokerPid,
  findPostgresPids,
  findRedisPid,
  type MemorySample,
  readCpuModel,
  readCpuTicks,
  readMachineCpu,
  roleV8Flags,
} from "./processes.ts";
import { deleteTopology, RawPublisher, readBrokerVersion } from "./raw_load.ts";
import {
  BullmqPublisher,
  measureAddBulk,
  obliterateQueues,
  readRedisVersion,
} from "./bullmq_load.ts";
import { formatNumber, median, round, type RoundResult, summarizeLatencies } from "./stats.ts";
import { cancelStream, typeQueue } from "../shared/adapters/rabbitmq/names.ts";
import { TASK_TYPES } from "../shared/tasks.ts";
import { BENCH_TASK_TYPES, DEFAULT_TASK_MIX, encodeTaskMix } from "./workload.ts";

const DEFAULT_MIX = DEFAULT_TASK_MIX.join(",");

/** The task stores colmena's server can be measured on, by their Spanish names. */
const STORES = ["memoria", "sqlite", "postgres"] as const;

/** A task store of colmena's server. */
type Store = (typeof STORES)[number];

const STORE_ALIASES: Readonly<Record<string, Store>> = {
  memoria: "memoria",
  memory: "memoria",
  sqlite: "sqlite",
  postgres: "postgres",
  postgresql: "postgres",
};

/** The server's `--store` value of each store. */
const STORE_FLAG: Readonly<Record<Store, string>> = {
  memoria: "memory",
  sqlite: "sqlite",
  postgres: "postgres",
};

const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test";
const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
/** Jobs per `Queue.addBulk` call in the bulk measure. */
const BULK_SIZE = 1000;
/** How long the Redis probe waits before the BullMQ side is skipped. */
const REDIS_PROBE_MS = 3_000;

const USAGE = `Uso: deno task -q bench [opciones]
  --tareas N          tareas medidas por ronda                        [20000]
  --clientes C        conexiones TCP de clientes (colmena)            [10]
  --ventana W         en vuelo por cliente (crudo y BullMQ: W×C)      [100]
  --workers K         procesos worker (en cada lado)                  [1]
  --concurrency P     prefetch (concurrency en BullMQ) de cada worker [200]
  --repeticiones R    rondas medidas por lado; se da la mediana       [3]
  --calentamiento N   tareas de calentamiento antes de medir          [500]
  --sin-carga N       tareas de la medida sin carga (1 cliente × 1 en vuelo) de
                      cada lado y repetición; 0 no la hace            [1000]
  --tipos LISTA       tipos de tarea, en rotación                     [${DEFAULT_MIX}]
  --limite-s S        tiempo máximo de una ronda, en segundos         [120]
  --reposo-s S        segundos sin trabajo antes de leer la memoria del final [0]
  --amqp-url URL      RabbitMQ                                        [amqp://guest:guest@127.0.0.1:5672]
  --almacen LISTA     almacenes del servidor de colmena: memoria, sqlite, postgres;
                      separados por comas o repitiendo la opción      [sqlite]
  --database-url URL  PostgreSQL para --almacen postgres              [DATABASE_URL, ${DEFAULT_DATABASE_URL}]
  --redis-url URL     Redis del lado BullMQ                           [REDIS_URL, ${DEFAULT_REDIS_URL}]
  --tareas-por-mensaje N  --tareas-por-mensaje del servidor de colmena (1: una tarea por mensaje) [32]
  --sin-bullmq        no medir BullMQ
  --sin-v8-flags      colmena sin las opciones de V8 de sus tareas en deno.json
  --solo LADO         medir solo "colmena", solo "crudo", solo "bullmq" o solo "lotes"
                      (lotes: solo submitMany frente a addBulk, sin rondas con carga)
  --json              salida para máquinas (JSON) en lugar de la tabla
  --help, -h, --ayuda esta ayuda`;

/** What is measured: colmena on one store, the raw baseline, or BullMQ. */
type Side = `colmena-${Store}` | "crudo" | "bullmq";

/** The sides `--solo` can pick. */
const SOLO_SIDES = ["colmena", "crudo", "bullmq", "lotes"] as const;

function colmenaSide(store: Store): Side {
  return `colmena-${store}`;
}

/** How a side is named in the report: `colmena (sqlite)`, `crudo (amqplib)`, `BullMQ (Redis)`. */
function sideLabel(side: Side): string {
  if (side === "crudo") return "crudo (amqplib)";
  if (side === "bullmq") return "BullMQ (Redis)";
  return `colmena (${side.slice("colmena-".length)})`;
}

/** The benchmark's settings, from the command line. */
interface BenchOptions {
  tasks: number;
  clients: number;
  window: number;
  workers: number;
  concurrency: number;
  /** The colmena server's `--tareas-por-mensaje`. */
  tasksPerMessage: number;
  repetitions: number;
  warmup: number;
  /** Tasks of each side's no-load measure (1 client, 1 in flight) per repetition; 0 skips it. */
  idleTasks: number;
  taskTypes: string[];
  timeoutMs: number;
  /** Idle time before the final memory is read, in milliseconds. */
  restMs: number;
  amqpUrl: string;
  /** Which of colmena, the raw baseline and BullMQ to measure. */
  sides: Exclude<(typeof SOLO_SIDES)[number], "lotes">[];
  /** Only the bulk measure (`submitMany` against `addBulk`): no loaded or no-load rounds (`--solo lotes`). */
  bulkOnly: boolean;
  /** colmena's task stores, in the order given. */
  stores: Store[];
  databaseUrl: string;
  redisUrl: string;
  json: boolean;
  /** Start colmena's server and workers with the `--v8-flags` of their `deno.json` tasks. */
  v8Flags: boolean;
}

/** How every child starts: network access; settings come from flags (`--ignore-env` reads the rest as unset). */
const DENO_RUN = ["run", "--allow-net", "--allow-env", "--ignore-env"];
/** How long a child may take to print its ready line, and to exit once asked. */
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
/** Pause between rounds, so that one round's tail (broker flushes, GC) does not land in the next. */
const PAUSE_MS = 300;
/** Prefetch of the raw publisher's result consumer: colmena's server default. */
const RESULT_PREFETCH = 500;

class _UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function parseOptions(args: readonly string[]): BenchOptions | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        tareas: { type: "string", default: "20000" },
        clientes: { type: "string", default: "10" },
        ventana: { type: "string", default: "100" },
        workers: { type: "string", default: "1" },
        concurrency: { type: "string", default: "200" },
        repeticiones: { type: "string", default: "3" },
        calentamiento: { type: "string", default: "500" },
        "sin-carga": { type: "string", default: "1000" },
        tipos: { type: "string", default: DEFAULT_MIX },
        "limite-s": { type: "string", default: "120" },
        "reposo-s": { type: "string", default: "0" },
        "amqp-url": { type: "string", default: "amqp://guest:guest@127.0.0.1:5672" },
        almacen: { type: "string", multiple: true },
        "database-url": {
          type: "string",
          default: Deno.env.get("DATABASE_URL") ?? DEFAULT_DATABASE_URL,
        },
        "redis-url": { type: "string", default: Deno.env.get("REDIS_URL") ?? DEFAULT_REDIS_URL },
        "sin-bullmq": { type: "boolean", default: false },
        "tareas-por-mensaje": { type: "string", default: "32" },
        "sin-v8-flags": { type: "boolean", default: false },
        solo: { type: "string" },
        json: { type: "boolean", default: false },
        ayuda: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new _UsageError(`Argumento no válido: ${err instanceof Error ? err.message : err}`);
  }
  if (values.ayuda) return "help";
  const problems: string[] = [];
  const int = (flag: string, value: string, min: number, max: number): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`--${flag}: debe ser un entero entre ${min} y ${max} (se recibió "${value}")`);
    }
    return n;
  };
  const taskTypes = values.tipos.split(",").map((t) => t.trim()).filter((t) => t !== "");
  for (const type of taskTypes) {
    if (!BENCH_TASK_TYPES.includes(type)) {
      problems.push(
        `--tipos: tipo desconocido "${type}" (válidos: ${BENCH_TASK_TYPES.join(", ")})`,
      );
    }
  }
  if (taskTypes.length === 0) problems.push("--tipos: hace falta al menos un tipo");
  const solo = SOLO_SIDES.find((side) => side === values.solo);
  if (values.solo !== undefined && solo === undefined) {
    problems.push(
      `--solo: debe ser "colmena", "crudo", "bullmq" o "lotes" (se recibió "${values.solo}")`,
    );
  }
  if (solo === "bullmq" && values["sin-bullmq"]) {
    problems.push("--solo bullmq y --sin-bullmq se contradicen");
  }
  if (!/^rediss?:\/\//.test(values["redis-url"])) {
    problems.push("--redis-url: debe empezar por redis:// o rediss://");
  }
  if (!/^amqps?:\/\//.test(values["amqp-url"])) {
    problems.push("--amqp-url: debe empezar por amqp:// o amqps://");
  }
  const stores: Store[] = [];
  for (const name of (values.almacen ?? ["sqlite"]).flatMap((list) => list.split(","))) {
    const key = name.trim().toLowerCase();
    if (key === "") continue;
    const store = Object.hasOwn(STORE_ALIASES, key) ? STORE_ALIASES[key] : undefined;
    if (store === undefined) {
      problems.push(`--almacen: almacén desconocido "${name}" (válidos: ${STORES.join(", ")})`);
    } else if (!stores.includes(store)) {
      stores.push(store);
    }
  }
  if (stores.length === 0) problems.push("--almacen: hace falta al menos un almacén");
  if (!/^postgres(ql)?:\/\//.test(values["database-url"])) {
    problems.push("--database-url: debe empezar por postgres://");
  }
  const options: BenchOptions = {
    tasks: int("tareas", values.tareas, 1, 10_000_000),
    clients: int("clientes", values.clientes, 1, 1_000),
    window: int("ventana", values.ventana, 1, 10_000),
    workers: int("workers", values.workers, 1, 64),
    concurrency: int("concurrency", values.concurrency, 1, 10_000),
    tasksPerMessage: int("tareas-por-mensaje", values["tareas-por-mensaje"], 1, 1_000),
    repetitions: int("repeticiones", values.repeticiones, 1, 100),
    warmup: int("calentamiento", values.calentamiento, 0, 1_000_000),
    idleTasks: int("sin-carga", values["sin-carga"], 0, 1_000_000),
    taskTypes,
    timeoutMs: int("limite-s", values["limite-s"], 1, 3_600) * 1000,
    restMs: int("reposo-s", values["reposo-s"], 0, 3_600) * 1000,
    amqpUrl: values["amqp-url"],
    sides: solo === "lotes"
      ? values["sin-bullmq"] ? ["colmena"] : ["colmena", "bullmq"]
      : solo !== undefined
      ? [solo]
      : values["sin-bullmq"]
      ? ["colmena", "crudo"]
      : ["colmena", "crudo", "bullmq"],
    stores,
    databaseUrl: values["database-url"],
    redisUrl: values["redis-url"],
    json: values.json,
    bulkOnly: solo === "lotes",
    v8Flags: !values["sin-v8-flags"],
  };
  if (problems.length > 0) throw new _UsageError(problems.join("\n"));
  return options;
}

/** One measured round, as reported. */
interface RoundRecord {
  side: Side;
  repetition: number;
  planned: number;
  completed: number;
  failed: number;
  errors: number;
  elapsedMs: number;
  tasksPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Until the task was stored: `accepted` (colmena), the publisher confirm (crudo), `add` (BullMQ). */
  acceptP50Ms: number;
  acceptP99Ms: number;
  /**
   * CPU time during the round, in milliseconds: per process group (`carga` is this process), `otros` for
   * every other process on the machine, and `robada` for time the hypervisor gave to other guests.
   */
  cpuMs: Record<string, number>;
  problem: string | null;
}

/** Medians over the repetitions of one side. */
interface SideSummary {
  repetitions: number;
  tasksPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  acceptP50Ms: number;
  acceptP99Ms: number;
  errors: number;
  failed: number;
  /** Median CPU time per task of each process group, in microseconds. */
  cpuUsPerTask: Record<string, number>;
  /** Median cores kept busy by the measured processes (their CPU time over the round's wall time). */
  busyCores: number;
  /** Median share of the machine's CPU time used by other processes or stolen by the hypervisor. */
  foreignShare: number;
}

/** Share of the machine's CPU taken by others above which the report warns that it is unreliable. */
const FOREIGN_WARNING = 0.05;

/** CPU time entries that belong to no measured process. */
const FOREIGN_CPU = ["otros", "robada"];

/**
 * CPU time entries that are part of another (the server's event loop, within the server's time): shown,
 * never added to a total.
 */
const PART_CPU = ["bucle"];

/** Process groups whose CPU time is sampled around each round. */
interface CpuGroups {
  [group: string]: () => Promise<number | undefined>;
}

async function snapshot(groups: CpuGroups): Promise<Record<string, number | undefined>> {
  const entries = await Promise.all(
    Object.entries(groups).map(async ([name, read]) => [name, await read()] as const),
  );
  return Object.fromEntries(entries);
}

function sumTicks(children: readonly ChildProcess[]): () => Promise<number | undefined> {
  return async () => {
    const ticks = await Promise.all(children.map((child) => child.cpuTicks()));
    let total = 0;
    for (const t of ticks) {
      if (t === undefined) return undefined;
      total += t;
    }
    return total;
  };
}

function toRecord(
  side: Side,
  repetition: number,
  result: RoundResult,
  cpuMs: Record<string, number>,
): RoundRecord {
  const latency = summarizeLatencies(result.latencies, result.latencyCount);
  const accept = summarizeLatencies(result.acceptLatencies, result.acceptCount);
  return {
    side,
    repetition,
    planned: result.planned,
    completed: result.completed,
    failed: result.failed,
    errors: result.errors,
    elapsedMs: round(result.elapsedMs, 1),
    tasksPerSecond: round(result.completed / (result.elapsedMs / 1000), 1),
    p50Ms: round(latency.p50Ms),
    p95Ms: round(latency.p95Ms),
    p99Ms: round(latency.p99Ms),
    maxMs: round(latency.maxMs),
    acceptP50Ms: round(accept.p50Ms),
    acceptP99Ms: round(accept.p99Ms),
    cpuMs,
    problem: result.problem,
  };
}

function summarize(records: readonly RoundRecord[]): SideSummary {
  const groups = new Set(records.flatMap((r) => Object.keys(r.cpuMs)));
  const cpuUsPerTask: Record<string, number> = {};
  for (const group of groups) {
    cpuUsPerTask[group] = round(
      median(records.map((r) => ((r.cpuMs[group] ?? NaN) * 1000) / r.completed)),
      1,
    );
  }
  return {
    repetitions: records.length,
    tasksPerSecond: round(median(records.map((r) => r.tasksPerSecond)), 1),
    p50Ms: round(median(records.map((r) => r.p50Ms))),
    p95Ms: round(median(records.map((r) => r.p95Ms))),
    p99Ms: round(median(records.map((r) => r.p99Ms))),
    acceptP50Ms: round(median(records.map((r) => r.acceptP50Ms))),
    acceptP99Ms: round(median(records.map((r) => r.acceptP99Ms))),
    errors: records.reduce((n, r) => n + r.errors, 0),
    failed: records.reduce((n, r) => n + r.failed, 0),
    cpuUsPerTask,
    busyCores: round(
      median(
        records.map((r) =>
          Object.entries(r.cpuMs)
            .filter(([group]) => !FOREIGN_CPU.includes(group) && !PART_CPU.includes(group))
            .reduce((sum, [, ms]) => sum + ms, 0) / r.elapsedMs
        ),
      ),
      2,
    ),
    foreignShare: round(
      median(
        records.map((r) =>
          ((r.cpuMs.otros ?? 0) + (r.cpuMs.robada ?? 0)) /
          (r.elapsedMs * navigator.hardwareConcurrency)
        ),
      ),
      3,
    ),
  };
}

function progress(message: string): void {
  console.error(message);
}

function describeRound(record: RoundRecord): string {
  const parts = [
    `${formatNumber(record.tasksPerSecond)} tareas/s`,
    `p50 ${formatNumber(record.p50Ms, 2)} ms`,
    `p99 ${formatNumber(record.p99Ms, 2)} ms`,
    `errores ${record.errors + record.failed}`,
  ];
  if (record.completed < record.planned) parts.push(`${record.completed}/${record.planned} tareas`);
  if (record.problem !== null) parts.push(`INCOMPLETA: ${record.problem}`);
  return parts.join(", ");
}

/** Machine facts printed with the results. */
interface MachineInfo {
  cpus: number;
  cpuModel: string;
  deno: string;
  v8: string;
  rabbitmq: string;
  amqplib: string;
  /** Redis's version, when the BullMQ side ran. */
  redis?: string;
  bullmq: string;
}

function readImportSpecifier(root: string, name: string): string {
  try {
    const config = JSON.parse(Deno.readTextFileSync(`${root}deno.json`));
    return String(config?.imports?.[name] ?? "desconocido");
  } catch {
    return "desconocido";
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The queues and server id of colmena on one store. */
interface ColmenaNames {
  taskQueue: string;
  resultQueue: string;
  serverId: string;
}

/** Names of everything the run declares on the broker, unique to this run (one topology per store). */
function topologyNames(runId: string, stores: readonly Store[]) {
  const base = `bench-${runId}`;
  const colmena = new Map<Store, ColmenaNames>();
  const queues: string[] = [];
  const exchanges: string[] = [];
  for (const store of stores) {
    const names = {
      taskQueue: `${base}.colmena-${store}.tareas`,
      resultQueue: `${base}.colmena-${store}.resultados`,
      serverId: `bench-${runId.slice(0, 8)}-${store}`,
    };
    colmena.set(store, names);
    queues.push(
      ...TASK_TYPES.map((type) => typeQueue(names.taskQueue, type)),
      `${names.taskQueue}.dlq`,
      cancelStream(names.taskQueue),
      names.resultQueue,
      `${names.resultQueue}.server.${names.serverId}`,
    );
    exchanges.push(
      `${names.resultQueue}.replies`,
      `${names.taskQueue}.control`,
      `${names.resultQueue}.heartbeats`,
    );
  }
  // The workerless server of the `submitMany` measure, on the default store.
  const bulk = {
    taskQueue: `${base}.colmena-lotes.tareas`,
    resultQueue: `${base}.colmena-lotes.resultados`,
    serverId: `bench-${runId.slice(0, 8)}-lotes`,
  };
  queues.push(
    ...TASK_TYPES.map((type) => typeQueue(bulk.taskQueue, type)),
    `${bulk.taskQueue}.dlq`,
    cancelStream(bulk.taskQueue),
    bulk.resultQueue,
    `${bulk.resultQueue}.server.${bulk.serverId}`,
  );
  exchanges.push(
    `${bulk.resultQueue}.replies`,
    `${bulk.taskQueue}.control`,
    `${bulk.resultQueue}.heartbeats`,
  );
  const raw = { taskQueue: `${base}.crudo.tareas`, resultQueue: `${base}.crudo.resultados` };
  queues.push(raw.taskQueue, raw.resultQueue);
  // BullMQ's queues live in Redis (keys `bull:<name>:*`), not on the broker.
  const bullmq = { queue: `${base}.bullmq`, bulkQueue: `${base}.bullmq-bulk` };
  return { colmena, bulk, raw, bullmq, queues, exchanges };
}

/** colmena ÷ another side, from the medians: below 1 for tasks/s and above 1 for latency mean slower. */
interface Ratio {
  tasksPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

/** One side's no-load latency: medians over the repetitions. */
interface IdleSummary {
  tasks: number;
  p50Ms: number;
  p99Ms: number;
  /** Each repetition's p50. */
  perRepetitionP50: number[];
  /** colmena only: this p50 minus the raw baseline's p50 (`null` without the raw side). */
  p50MinusRawMs: number | null;
}

/** The whole report, as `--json` prints it. */
interface Report {
  date: string;
  machine: MachineInfo;
  options: Omit<BenchOptions, "json" | "amqpUrl" | "databaseUrl" | "redisUrl">;
  rounds: RoundRecord[];
  summary: Partial<Record<Side, SideSummary>>;
  /** Each colmena side ÷ crudo, of the medians. */
  ratio: Partial<Record<Side, Ratio>>;
  /** Each colmena side ÷ crudo of tasks/s within each repetition (their rounds ran back to back). */
  ratioPerRepetition: Partial<Record<Side, number[]>>;
  /** Each colmena side ÷ BullMQ, of the medians. */
  ratioBullmq: Partial<Record<Side, Ratio>>;
  /** Each colmena side ÷ BullMQ of tasks/s within each repetition. */
  ratioBullmqPerRepetition: Partial<Record<Side, number[]>>;
  /** BullMQ's `addBulk` measure: one client, no worker, `bulkSize` jobs a call; median over repetitions. */
  bullmqAddBulk: {
    tasks: number;
    bulkSize: number;
    tasksPerSecond: number;
    perRepetition: number[];
  } | null;
  /**
   * colmena's `submitMany` measure, the counterpart of `bullmqAddBulk`: one `TaskClient`, `bulkSize` tasks
   * a call, to a SQLite server with no worker; median over repetitions, and its ratio to `addBulk`.
   */
  colmenaSubmitMany: {
    tasks: number;
    bulkSize: number;
    tasksPerSecond: number;
    perRepetition: number[];
    ratioAddBulk: number | null;
    /** CPU time per task of each process during the rounds (µs): client (`carga`), server, RabbitMQ. */
    cpuUsPerTask: Record<string, number>;
  } | null;
  /**
   * The no-load measure of each side: `tasks` one at a time (1 client, 1 in flight); medians over the
   * repetitions of each round's p50 and p99, and for colmena its p50 minus the raw baseline's.
   */
  idle: Partial<Record<Side, IdleSummary>>;
  /** Sides that were asked for but not measured, with the reason (Spanish). */
  skipped: Partial<Record<Side, string>>;
  /** Each store ÷ the in-memory store, of the medians, when `memoria` was measured. */
  storeRatio: Partial<Record<Store, Ratio>>;
  /** Each store ÷ the in-memory store of tasks/s within each repetition. */
  storeRatioPerRepetition: Partial<Record<Store, number[]>>;
  /** Memory of each child process at the end, in KiB. */
  memory: { name: string; rssKiB: number; peakKiB: number }[];
  cleanupFailed: string[];
  /** Lines starting with `ERROR` or `AVISO` that a child printed, by child. */
  childWarnings: Record<string, string[]>;
}

async function measure(
  options: BenchOptions,
  interrupted: Promise<never>,
): Promise<Report> {
  const root = fileURLToPath(new URL("../", import.meta.url));
  const runId = crypto.randomUUID();
  const colmenaStores = options.sides.includes("colmena") && !options.bulkOnly
    ? options.stores
    : [];
  const names = topologyNames(runId, colmenaStores);
  const skipped: Partial<Record<Side, string>> = {};
  let redis: string | undefined;
  if (options.sides.includes("bullmq")) {
    const where = options.redisUrl.replace(/\/\/[^@/]*@/, "//");
    try {
      redis = await Promise.race([readRedisVersion(options.redisUrl, REDIS_PROBE_MS), interrupted]);
    } catch (err) {
      skipped.bullmq = `no se puede conectar a Redis en ${where} (${
        err instanceof Error ? err.message : err
      }); se omite BullMQ`;
      progress(`AVISO: ${skipped.bullmq}`);
    }
  }
  const sides: Side[] = [
    ...colmenaStores.map(colmenaSide),
    ...(options.sides.includes("crudo") ? ["crudo" as const] : []),
    ...(redis !== undefined ? ["bullmq" as const] : []),
  ];
  // The rounds with load and without: none when only the bulk measure is asked for.
  const roundSides = options.bulkOnly ? [] : sides;
  if (sides.length === 0 && !options.sides.includes("colmena")) {
    throw new Error(`No queda nada que medir: ${skipped.bullmq ?? "sin lados"}`);
  }
  // The SQLite files and object folders of the run, under the git-ignored ./data, removed at the end.
  const dataDir = `data/bench-${runId.slice(0, 8)}`;
  const schema = `bench_${runId.replaceAll("-", "").slice(0, 12)}`;
  const taskSpecs = encodeTaskMix(options.taskTypes);
  const ticksPerSecond = await clockTicksPerSecond();
  // BullMQ alone does not need RabbitMQ.
  const needsBroker = options.sides.some((side) => side !== "bullmq");
  const version = needsBroker
    ? readBrokerVersion(options.amqpUrl).catch((cause: unknown) => {
      const where = options.amqpUrl.replace(/\/\/[^@/]*@/, "//");
      throw new Error(`No se puede conectar a RabbitMQ en ${where}`, { cause });
    })
    : Promise.resolve("—");
  const rabbitmq = await Promise.race([version, interrupted]);
  const machine: MachineInfo = {
    cpus: navigator.hardwareConcurrency,
    cpuModel: await readCpuModel(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    rabbitmq,
    amqplib: readImportSpecifier(root, "amqplib"),
    bullmq: readImportSpecifier(root, "bullmq"),
  };
  if (redis !== undefined) machine.redis = redis;
  const { json: _json, amqpUrl: _url, databaseUrl: _db, redisUrl: _redis, ...shownOptions } =
    options;
  const report: Report = {
    date: new Date().toISOString(),
    machine,
    options: shownOptions,
    rounds: [],
    summary: {},
    ratio: {},
    ratioPerRepetition: {},
    ratioBullmq: {},
    ratioBullmqPerRepetition: {},
    bullmqAddBulk: null,
    colmenaSubmitMany: null,
    idle: {},
    skipped,
    storeRatio: {},
    storeRatioPerRepetition: {},
    memory: [],
    cleanupFailed: [],
    childWarnings: {},
  };
  const tasks = formatNumber(options.tasks);
  progress(
    `Benchmark de colmena: ${tasks} tareas por ronda, ${options.clients} clientes × ` +
      `${options.window} en vuelo, ${options.workers} worker(s) con prefetch ${options.concurrency}, ` +
      `${options.repetitions} repetición(es); almacenes ${colmenaStores.join(", ") || "—"}; ` +
      `RabbitMQ ${rabbitmq}, ${machine.cpus} núcleos`,
  );

  const servers = new Map<Store, { server: ChildProcess; workers: ChildProcess[]; port: number }>();
  const rawWorkers: ChildProcess[] = [];
  const bullmqWorkers: ChildProcess[] = [];
  const children = (): ChildProcess[] => [
    ...[...servers.values()].flatMap((s) => [s.server, ...s.workers]),
    ...rawWorkers,
    ...bullmqWorkers,
    ...(bulkServer === undefined ? [] : [bulkServer]),
  ];
  let publisher: RawPublisher | undefined;
  let bullmqPublisher: BullmqPublisher | undefined;
  const bulkRates: number[] = [];
  const submitManyRates: number[] = [];
  /** CPU ticks of each process over every `submitMany` round. */
  const submitManyTicks: Record<string, number> = {};
  const idleSamples = new Map<Side, { p50: number[]; p99: number[] }>();
  let bulkServer: ChildProcess | undefined;
  let bulkPort = 0;
  const wait = <T>(p: Promise<T>): Promise<T> => Promise.race([p, interrupted]);
  // colmena's roles run with the V8 heap settings of their `deno task` (see deno.json).
  const serverFlags = options.v8Flags ? roleV8Flags("servidor") : [];
  const workerFlags = options.v8Flags ? roleV8Flags("worker") : [];
  try {
    for (const store of colmenaStores) {
      progress(`Arrancando servidor y workers de colmena (almacén ${store})…`);
      const own = names.colmena.get(store)!;
      const storeDir = `${dataDir}/${store}`;
      // Each child may read and write its data folder (SQLite, objects) and read the migrations.
      const files = [
        `--allow-read=${storeDir},server/stores/migrations,server/stores/sqlite_writer.ts`,
        `--allow-write=${storeDir}`,
      ];
      const queues = [
        ...["--task-queue", own.taskQueue, "--result-queue", own.resultQueue],
        ...["--amqp-url", options.amqpUrl, "--data-dir", storeDir],
      ];
      const storeArgs = ["--store", STORE_FLAG[store]];
      if (store === "postgres") {
        storeArgs.push("--database-url", options.databaseUrl, "--db-schema", schema);
      }
      const server = ChildProcess.spawn(`servidor (${store})`, {
        cwd: root,
        args: [
          ...[
            ...DENO_RUN,
            ...serverFlags,
            ...files,
            "server.ts",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
          ],
          ...["--http", "127.0.0.1:0"],
          ...["--server-id", own.serverId, ...storeArgs, ...queues],
          ...["--tareas-por-mensaje", String(options.tasksPerMessage)],
        ],
      });
      const workers: ChildProcess[] = [];
      const entry = { server, workers, port: 0 };
      servers.set(store, entry);
      const match = await wait(server.waitForLine(/Escuchando en (\S+):(\d+)/, START_TIMEOUT_MS));
      entry.port = Number(match[2]);
      for (let i = 1; i <= options.workers; i++) {
        entry.workers.push(ChildProcess.spawn(`worker ${i} (${store})`, {
          cwd: root,
          args: [
            ...[
              ...DENO_RUN,
              ...workerFlags,
              ...files,
              "worker.ts",
              `bench-w${i}-${store}`,
              "--quiet",
            ],
            ...["--concurrency", String(options.concurrency), ...queues],
          ],
        }));
      }
      await wait(Promise.all(entry.workers.map((w) => w.waitForLine(/ listo/, START_TIMEOUT_MS))));
    }
    if (options.sides.includes("colmena")) {
      progress("Arrancando el servidor de colmena sin workers para submitMany (SQLite)…");
      const storeDir = `${dataDir}/lotes`;
      bulkServer = ChildProcess.spawn("servidor (lotes)", {
        cwd: root,
        args: [
          ...DENO_RUN,
          ...serverFlags,
          ...[
            `--allow-read=${storeDir},server/stores/migrations,server/stores/sqlite_writer.ts`,
            `--allow-write=${storeDir}`,
          ],
          ...["server.ts", "--port", "0", "--host", "127.0.0.1", "--sin-http"],
          ...["--server-id", names.bulk.serverId, "--store", "sqlite"],
          ...["--task-queue", names.bulk.taskQueue, "--result-queue", names.bulk.resultQueue],
          ...["--amqp-url", options.amqpUrl, "--data-dir", storeDir],
        ],
      });
      const match = await wait(
        bulkServer.waitForLine(/Escuchando en (\S+):(\d+)/, START_TIMEOUT_MS),
      );
      bulkPort = Number(match[2]);
    }
    if (options.sides.includes("crudo")) {
      progress("Arrancando workers crudos (amqplib)…");
      for (let i = 1; i <= options.workers; i++) {
        rawWorkers.push(ChildProcess.spawn(`worker crudo ${i}`, {
          cwd: root,
          args: [
            ...[...DENO_RUN, "bench/raw_worker.ts", "--name", `crudo-${i}`],
            ...["--task-queue", names.raw.taskQueue, "--result-queue", names.raw.resultQueue],
            ...["--prefetch", String(options.concurrency), "--amqp-url", options.amqpUrl],
          ],
        }));
      }
      await wait(Promise.all(rawWorkers.map((w) => w.waitForLine(/ listo/, START_TIMEOUT_MS))));
      publisher = await wait(RawPublisher.open(options.amqpUrl, {
        ...names.raw,
        resultPrefetch: RESULT_PREFETCH,
      }));
    }

    if (roundSides.includes("bullmq")) {
      progress("Arrancando workers de BullMQ (Redis)…");
      for (let i = 1; i <= options.workers; i++) {
        bullmqWorkers.push(ChildProcess.spawn(`worker BullMQ ${i}`, {
          cwd: root,
          args: [
            ...[...DENO_RUN, "bench/bullmq_worker.ts", "--name", `bullmq-${i}`],
            ...["--queue", names.bullmq.queue, "--concurrency", String(options.concurrency)],
            ...["--redis-url", options.redisUrl],
          ],
        }));
      }
      await wait(
        Promise.all(bullmqWorkers.map((w) => w.waitForLine(/ listo/, START_TIMEOUT_MS))),
      );
      bullmqPublisher = await wait(BullmqPublisher.open(options.redisUrl, names.bullmq.queue));
    }

    const brokerPid = await findBrokerPid();
    const redisPid = await findRedisPid();
    const groups = new Map<Side, CpuGroups>();
    for (const [store, { server, workers }] of servers) {
      const group: CpuGroups = {
        carga: () => readCpuTicks(Deno.pid),
        servidor: sumTicks([server]),
        bucle: () => server.mainThreadTicks(),
        worker: sumTicks(workers),
      };
      // PostgreSQL runs on this machine too: its processes' CPU is part of what a task costs.
      if (store === "postgres") group.postgres = sumPostgresTicks;
      groups.set(colmenaSide(store), group);
    }
    groups.set("crudo", { carga: () => readCpuTicks(Deno.pid), worker: sumTicks(rawWorkers) });
    if (brokerPid !== undefined) {
      for (const group of groups.values()) group.rabbitmq = () => readCpuTicks(brokerPid);
    }
    // RabbitMQ idles during BullMQ's rounds and Redis during the others: each side counts its own store.
    const bullmqGroup: CpuGroups = {
      carga: () => readCpuTicks(Deno.pid),
      worker: sumTicks(bullmqWorkers),
    };
    if (redisPid !== undefined) bullmqGroup.redis = () => readCpuTicks(redisPid);
    groups.set("bullmq", bullmqGroup);

    const runRound = async (
      side: Side,
      tasks: number,
      load = { clients: options.clients, window: options.window },
    ): Promise<RoundResult> => {
      if (side === "bullmq") {
        if (bullmqPublisher === undefined) {
          throw new TypeError("Cannot run BullMQ round: no publisher");
        }
        return await wait(bullmqPublisher.run({
          tasks,
          inFlight: load.window * load.clients,
          taskSpecs,
          timeoutMs: options.timeoutMs,
        }));
      }
      if (side !== "crudo") {
        const { port } = servers.get(storeOf(side))!;
        return await wait(runColmenaRound({
          host: "127.0.0.1",
          port,
          clients: load.clients,
          window: load.window,
          tasks,
          taskSpecs,
          timeoutMs: options.timeoutMs,
        }));
      }
      if (publisher === undefined) throw new TypeError("Cannot run raw round: no publisher");
      return await wait(publisher.run({
        tasks,
        inFlight: load.window * load.clients,
        taskSpecs,
        timeoutMs: options.timeoutMs,
      }));
    };

    // The no-load measure comes first, so that no loaded round's tail (broker flushes, GC) lands in it.
    if (options.idleTasks > 0) {
      for (const side of roundSides) {
        await runRound(side, Math.min(100, options.idleTasks), { clients: 1, window: 1 });
      }
    }
    for (let rep = 1; rep <= options.repetitions; rep++) {
      const order = rep % 2 === 1 ? roundSides : [...roundSides].reverse();
      if (options.idleTasks > 0) {
        for (const side of order) {
          const result = await runRound(side, options.idleTasks, { clients: 1, window: 1 });
          if (result.problem !== null) {
            throw new Error(`Sin carga, ${sideLabel(side)}: ${result.problem}`);
          }
          const { p50Ms: p50, p99Ms: p99 } = summarizeLatencies(
            result.latencies,
            result.latencyCount,
          );
          const samples = idleSamples.get(side) ?? { p50: [], p99: [] };
          samples.p50.push(round(p50, 3));
          samples.p99.push(round(p99, 3));
          idleSamples.set(side, samples);
          progress(
            `Ronda ${rep}/${options.repetitions} · ${sideLabel(side)} sin carga: p50 ${
              formatNumber(p50, 2)
            } ms, p99 ${formatNumber(p99, 2)} ms`,
          );
          await delay(PAUSE_MS);
        }
      }
    }

    if (options.warmup > 0) {
      for (const side of roundSides) {
        progress(`Calentamiento de ${sideLabel(side)}: ${formatNumber(options.warmup)} tareas…`);
        const result = await runRound(side, options.warmup);
        if (result.problem !== null || result.completed < result.planned) {
          throw new Error(
            `El calentamiento de ${
              sideLabel(side)
            } no terminó (${result.completed}/${result.planned}): ${
              result.problem ?? "faltan resultados"
            }`,
          );
        }
        await delay(PAUSE_MS);
      }
    }

    for (let rep = 1; rep <= options.repetitions; rep++) {
      // Alternate the order, so that no side always follows the same other side's tail.
      const order = rep % 2 === 1 ? roundSides : [...roundSides].reverse();
      for (const side of order) {
        const group = groups.get(side)!;
        const [before, machineBefore] = await Promise.all([snapshot(group), readMachineCpu()]);
        const result = await runRound(side, options.tasks);
        const [after, machineAfter] = await Promise.all([snapshot(group), readMachineCpu()]);
        const toMs = (ticks: number): number => round((ticks * 1000) / ticksPerSecond, 1);
        const cpuMs: Record<string, number> = {};
        let measured = 0;
        for (const name of Object.keys(before)) {
          const a = before[name];
          const b = after[name];
          if (a !== undefined && b !== undefined) {
            cpuMs[name] = toMs(Math.max(0, b - a));
            if (!PART_CPU.includes(name)) measured += Math.max(0, b - a);
          }
        }
        if (machineBefore !== undefined && machineAfter !== undefined) {
          cpuMs.otros = toMs(Math.max(0, machineAfter.busy - machineBefore.busy - measured));
          cpuMs.robada = toMs(machineAfter.steal - machineBefore.steal);
        }
        const record = toRecord(side, rep, result, cpuMs);
        report.rounds.push(record);
        progress(
          `Ronda ${rep}/${options.repetitions} · ${sideLabel(side)}: ${describeRound(record)}`,
        );
        await delay(PAUSE_MS);
      }
      if (sides.includes("bullmq")) {
        const ms = await wait(measureAddBulk(options.redisUrl, {
          queueName: names.bullmq.bulkQueue,
          tasks: options.tasks,
          bulk: BULK_SIZE,
          taskSpecs,
        }));
        bulkRates.push(round(options.tasks / (ms / 1000), 1));
        progress(
          `Ronda ${rep}/${options.repetitions} · BullMQ addBulk (lotes de ${BULK_SIZE}, sin ` +
            `workers): ${formatNumber(bulkRates.at(-1)!)} tareas/s`,
        );
        await delay(PAUSE_MS);
      }
      if (bulkServer !== undefined) {
        const cpu: CpuGroups = {
          carga: () => readCpuTicks(Deno.pid),
          servidor: sumTicks([bulkServer]),
          ...(brokerPid === undefined ? {} : { rabbitmq: () => readCpuTicks(brokerPid) }),
        };
        const before = await snapshot(cpu);
        const ms = await wait(measureSubmitMany({
          host: "127.0.0.1",
          port: bulkPort,
          tasks: options.tasks,
          bulk: BULK_SIZE,
          taskSpecs,
        }));
        submitManyRates.push(round(options.tasks / (ms / 1000), 1));
        const after = await snapshot(cpu);
        for (const name of Object.keys(cpu)) {
          const a = before[name];
          const b = after[name];
          if (a !== undefined && b !== undefined) {
            submitManyTicks[name] = (submitManyTicks[name] ?? 0) + Math.max(0, b - a);
          }
        }
        progress(
          `Ronda ${rep}/${options.repetitions} · colmena submitMany (lotes de ${BULK_SIZE}, sin ` +
            `workers): ${formatNumber(submitManyRates.at(-1)!)} tareas/s`,
        );
        await delay(PAUSE_MS);
      }
    }
    const rawIdle = idleSamples.get("crudo");
    for (const [side, samples] of idleSamples) {
      const p50 = round(median(samples.p50), 3);
      report.idle[side] = {
        tasks: options.idleTasks,
        p50Ms: p50,
        p99Ms: round(median(samples.p99), 3),
        perRepetitionP50: samples.p50,
        p50MinusRawMs: side.startsWith("colmena-") && rawIdle !== undefined
          ? round(p50 - median(rawIdle.p50), 3)
          : null,
      };
    }
    if (submitManyRates.length > 0) {
      const rate = round(median(submitManyRates), 1);
      report.colmenaSubmitMany = {
        tasks: options.tasks,
        bulkSize: BULK_SIZE,
        tasksPerSecond: rate,
        perRepetition: submitManyRates,
        ratioAddBulk: bulkRates.length > 0 ? round(rate / median(bulkRates)) : null,
        cpuUsPerTask: Object.fromEntries(
          Object.entries(submitManyTicks).map(([name, ticks]) => [
            name,
            round((ticks * 1e6) / ticksPerSecond / (options.tasks * submitManyRates.length), 1),
          ]),
        ),
      };
    }
    if (bulkRates.length > 0) {
      report.bullmqAddBulk = {
        tasks: options.tasks,
        bulkSize: BULK_SIZE,
        tasksPerSecond: round(median(bulkRates), 1),
        perRepetition: bulkRates,
      };
    }

    // The memory of a process that has just worked counts garbage V8 has not collected yet.
    if (options.restMs > 0) await new Promise((resolve) => setTimeout(resolve, options.restMs));
    for (const child of children()) {
      const sample: MemorySample | undefined = await child.memory();
      if (sample !== undefined) report.memory.push({ name: child.name, ...sample });
    }
  } finally {
    await publisher?.close();
    await bullmqPublisher?.close();
    const all = children();
    if (all.length > 0) progress("Deteniendo procesos hijos…");
    await Promise.all(all.map((c) => c.stop(STOP_TIMEOUT_MS)));
    for (const child of all) {
      if (child.warnings.length > 0) report.childWarnings[child.name] = child.warnings;
    }
    if (needsBroker) {
      try {
        report.cleanupFailed = await deleteTopology(options.amqpUrl, names);
      } catch {
        report.cleanupFailed = [...names.queues, ...names.exchanges];
      }
    }
    if (sides.includes("bullmq")) {
      const left = await obliterateQueues(options.redisUrl, [
        names.bullmq.queue,
        names.bullmq.bulkQueue,
      ]).catch(() => [names.bullmq.queue, names.bullmq.bulkQueue]);
      report.cleanupFailed.push(...left.map((name) => `cola ${name} de Redis`));
    }
    if (colmenaStores.includes("postgres")) {
      await dropPostgresSchema(options.databaseUrl, schema).catch(() => {
        report.cleanupFailed.push(`esquema ${schema} de PostgreSQL`);
      });
    }
    await Deno.remove(dataDir, { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) report.cleanupFailed.push(dataDir);
    });
    if (report.cleanupFailed.length > 0) {
      progress(`AVISO: no se pudieron borrar: ${report.cleanupFailed.join(", ")}`);
    }
  }

  for (const side of sides) {
    const records = report.rounds.filter((r) => r.side === side);
    if (records.length > 0) report.summary[side] = summarize(records);
  }
  const ratioOf = (a: SideSummary, b: SideSummary): Ratio => ({
    tasksPerSecond: round(a.tasksPerSecond / b.tasksPerSecond),
    p50Ms: round(a.p50Ms / b.p50Ms),
    p95Ms: round(a.p95Ms / b.p95Ms),
    p99Ms: round(a.p99Ms / b.p99Ms),
  });
  const perRepetition = (a: Side, b: Side): number[] => {
    const ratios: number[] = [];
    for (let rep = 1; rep <= options.repetitions; rep++) {
      const x = report.rounds.find((r) => r.repetition === rep && r.side === a);
      const y = report.rounds.find((r) => r.repetition === rep && r.side === b);
      if (x && y) ratios.push(round(x.tasksPerSecond / y.tasksPerSecond));
    }
    return ratios;
  };
  const raw = report.summary.crudo;
  const bullmq = report.summary.bullmq;
  const memory = report.summary[colmenaSide("memoria")];
  for (const store of colmenaStores) {
    const side = colmenaSide(store);
    const summary = report.summary[side];
    if (summary === undefined) continue;
    if (raw !== undefined) {
      report.ratio[side] = ratioOf(summary, raw);
      report.ratioPerRepetition[side] = perRepetition(side, "crudo");
    }
    if (bullmq !== undefined) {
      report.ratioBullmq[side] = ratioOf(summary, bullmq);
      report.ratioBullmqPerRepetition[side] = perRepetition(side, "bullmq");
    }
    if (memory !== undefined && store !== "memoria") {
      report.storeRatio[store] = ratioOf(summary, memory);
      report.storeRatioPerRepetition[store] = perRepetition(side, colmenaSide("memoria"));
    }
  }
  return report;
}

/** The store of a colmena side. */
function storeOf(side: Side): Store {
  const store = STORES.find((s) => side === colmenaSide(s));
  if (store === undefined) throw new TypeError(`Cannot find the store of side "${side}"`);
  return store;
}

/** CPU ticks of every PostgreSQL process on this machine (server and backends); `undefined` when none. */
async function sumPostgresTicks(): Promise<number | undefined> {
  const pids = await findPostgresPids();
  if (pids.length === 0) return undefined;
  const ticks = await Promise.all(pids.map((pid) => readCpuTicks(pid)));
  return ticks.reduce<number>((sum, t) => sum + (t ?? 0), 0);
}

function pad(text: string, width: number, align: "left" | "right" = "right"): string {
  return align === "left" ? text.padEnd(width) : text.padStart(width);
}

function renderTable(report: Report): string {
  const o = report.options;
  const lines: string[] = [];
  const m = report.machine;
  const sides = [...new Set(report.rounds.map((r) => r.side))];
  const width = 28;
  const peers = sides.includes("bullmq") ? "amqplib crudo y BullMQ" : "amqplib crudo";
  const stack = [`RabbitMQ ${m.rabbitmq}`, ...(m.redis === undefined ? [] : [`Redis ${m.redis}`])];
  const libraries = [m.amqplib, ...(sides.includes("bullmq") ? [m.bullmq] : [])];
  lines.push(
    `colmena frente a ${peers} — ${report.date.slice(0, 10)}`,
    `Máquina: ${m.cpus} núcleos (${m.cpuModel}), ${stack.join(", ")}, Deno ${m.deno}, ` +
      libraries.join(", "),
    `Carga: ${formatNumber(o.tasks)} tareas por ronda (${o.taskTypes.join(", ")}), ` +
      `${o.clients} clientes × ${o.window} en vuelo (crudo y BullMQ: ${
        o.clients * o.window
      } en vuelo), ${o.workers} worker(s), prefetch/concurrency ${o.concurrency}; ` +
      `mediana de ${o.repetitions} repetición(es)`,
    `Opciones de V8 de colmena (servidor · worker): ${
      o.v8Flags
        ? `${roleV8Flags("servidor").join(" ") || "ninguna"} · ${
          roleV8Flags("worker").join(" ") || "ninguna"
        }`
        : "ninguna (--sin-v8-flags)"
    }`,
  );
  for (const [side, reason] of Object.entries(report.skipped)) {
    lines.push(`Sin medir ${sideLabel(side as Side)}: ${reason}`);
  }
  lines.push("");
  const header = [
    pad("", width, "left"),
    pad("tareas/s", 10),
    pad("p50 ms", 9),
    pad("p95 ms", 9),
    pad("p99 ms", 9),
    pad("errores", 9),
  ].join("");
  lines.push(header);
  const row = (label: string, s: SideSummary): string =>
    [
      pad(label, width, "left"),
      pad(formatNumber(s.tasksPerSecond), 10),
      pad(formatNumber(s.p50Ms, 2), 9),
      pad(formatNumber(s.p95Ms, 2), 9),
      pad(formatNumber(s.p99Ms, 2), 9),
      pad(String(s.errors + s.failed), 9),
    ].join("");
  const ratioRow = (label: string, r: Ratio): string =>
    [
      pad(label, width, "left"),
      pad(formatNumber(r.tasksPerSecond, 2), 10),
      pad(formatNumber(r.p50Ms, 2), 9),
      pad(formatNumber(r.p95Ms, 2), 9),
      pad(formatNumber(r.p99Ms, 2), 9),
    ].join("");
  for (const side of sides) {
    const summary = report.summary[side];
    if (summary !== undefined) lines.push(row(sideLabel(side), summary));
  }
  for (const side of sides) {
    const ratio = report.ratio[side];
    if (ratio !== undefined) lines.push(ratioRow(`${sideLabel(side)}/crudo`, ratio));
  }
  for (const side of sides) {
    const ratio = report.ratioBullmq[side];
    if (ratio !== undefined) lines.push(ratioRow(`${sideLabel(side)}/BullMQ`, ratio));
  }
  for (const store of STORES) {
    const ratio = report.storeRatio[store];
    if (ratio !== undefined) lines.push(ratioRow(`${store}/memoria`, ratio));
  }
  lines.push("");
  for (const side of sides) {
    const rounds = report.rounds.filter((r) => r.side === side);
    lines.push(
      `Por repetición (${sideLabel(side)}, tareas/s): ${
        rounds.map((r) => formatNumber(r.tasksPerSecond)).join(" · ")
      }`,
    );
  }
  const perRepetition = (label: string, ratios: readonly number[] | undefined): void => {
    if (ratios === undefined || ratios.length === 0) return;
    lines.push(
      `${label} en tareas/s, por repetición: ${
        ratios.map((x) => formatNumber(x, 2)).join(" · ")
      } (mediana ${formatNumber(median([...ratios]), 2)})`,
    );
  };
  for (const side of sides) {
    perRepetition(`${sideLabel(side)}/crudo`, report.ratioPerRepetition[side]);
  }
  for (const side of sides) {
    perRepetition(`${sideLabel(side)}/BullMQ`, report.ratioBullmqPerRepetition[side]);
  }
  const bulk = report.bullmqAddBulk;
  if (bulk !== null) {
    lines.push(
      `BullMQ addBulk (un cliente, lotes de ${formatNumber(bulk.bulkSize)}, sin workers): ${
        formatNumber(bulk.tasksPerSecond)
      } tareas/s (por repetición: ${bulk.perRepetition.map((x) => formatNumber(x)).join(" · ")})`,
    );
  }
  const many = report.colmenaSubmitMany;
  if (many !== null) {
    lines.push(
      `colmena submitMany (un cliente, lotes de ${
        formatNumber(many.bulkSize)
      }, sin workers, SQLite): ${formatNumber(many.tasksPerSecond)} tareas/s (por repetición: ${
        many.perRepetition.map((x) => formatNumber(x)).join(" · ")
      })${
        many.ratioAddBulk === null
          ? ""
          : `; submitMany/addBulk ${formatNumber(many.ratioAddBulk, 2)}`
      }; µs de CPU por tarea: ${
        Object.entries(many.cpuUsPerTask).map(([name, us]) => `${name} ${formatNumber(us, 1)}`)
          .join(" · ")
      }`,
    );
  }
  const idleSides = sides.filter((side) => report.idle[side] !== undefined);
  if (idleSides.length > 0) {
    const tasks = report.idle[idleSides[0]!]!.tasks;
    lines.push(
      "",
      `Sin carga (1 cliente × 1 en vuelo, ${
        formatNumber(tasks)
      } tareas; mediana de las repeticiones):`,
      `${pad("", 28, "left")}${pad("p50 ms", 9)}${pad("p99 ms", 9)}${pad("p99/p50", 9)}${
        pad("p50 − crudo", 13)
      }  p50 por repetición`,
    );
    for (const side of idleSides) {
      const idle = report.idle[side]!;
      lines.push(
        `${pad(sideLabel(side), 28, "left")}${pad(formatNumber(idle.p50Ms, 2), 9)}${
          pad(formatNumber(idle.p99Ms, 2), 9)
        }${pad(formatNumber(idle.p99Ms / idle.p50Ms, 2), 9)}${
          pad(idle.p50MinusRawMs === null ? "—" : `${formatNumber(idle.p50MinusRawMs, 2)} ms`, 13)
        }  ${idle.perRepetitionP50.map((x) => formatNumber(x, 2)).join(" · ")}`,
      );
    }
  }
  for (const store of STORES) {
    perRepetition(`${store}/memoria`, report.storeRatioPerRepetition[store]);
  }
  lines.push("", "Hasta que la tarea queda guardada (mediana de p50 / p99):");
  for (const side of sides) {
    const s = report.summary[side];
    if (s === undefined) continue;
    const what = side === "crudo"
      ? "crudo, confirmación del publish"
      : side === "bullmq"
      ? "BullMQ, Queue.add resuelto"
      : `${sideLabel(side)}, frame "accepted"`;
    lines.push(
      `  ${what}: ${formatNumber(s.acceptP50Ms, 2)} / ${formatNumber(s.acceptP99Ms, 2)} ms`,
    );
  }
  const cpuGroups = ["carga", "servidor", "worker", "rabbitmq", "postgres", "redis"];
  const cpuTitles: Record<string, string> = {
    rabbitmq: "RabbitMQ",
    postgres: "PostgreSQL",
    redis: "Redis",
  };
  lines.push(
    "",
    "CPU por tarea (µs, mediana), núcleos ocupados por los procesos medidos y parte de la CPU de la",
    "máquina que se llevaron otros procesos o el hipervisor (ajena) durante la ronda; «bucle» es la",
    "parte del servidor que corrió en su hilo principal (el bucle de eventos), ya contada en servidor:",
    [
      pad("", width, "left"),
      ...cpuGroups.map((g) => pad(cpuTitles[g] ?? g, 11)),
      pad("total", 9),
      pad("núcleos", 9),
      pad("ajena", 8),
      pad("bucle", 8),
    ].join(""),
  );
  for (const side of sides) {
    const s = report.summary[side];
    if (s === undefined) continue;
    const values = cpuGroups.map((g) => s.cpuUsPerTask[g]);
    const total = values.reduce<number>((a, b) => a + (b ?? 0), 0);
    lines.push(
      [
        pad(sideLabel(side), width, "left"),
        ...values.map((v) => pad(v === undefined ? "—" : formatNumber(v), 11)),
        pad(formatNumber(total), 9),
        pad(formatNumber(s.busyCores, 2), 9),
        pad(`${formatNumber(s.foreignShare * 100)} %`, 8),
        pad(s.cpuUsPerTask.bucle === undefined ? "—" : formatNumber(s.cpuUsPerTask.bucle), 8),
      ].join(""),
    );
  }
  if (report.memory.length > 0) {
    lines.push(
      "",
      "Memoria al final (RSS / pico): " +
        report.memory.map((mem) =>
          `${mem.name} ${formatNumber(mem.rssKiB / 1024)} / ${formatNumber(mem.peakKiB / 1024)} MB`
        ).join("; "),
    );
  }
  const foreign = Math.max(...Object.values(report.summary).map((s) => s.foreignShare));
  if (foreign > FOREIGN_WARNING) {
    lines.push(
      "",
      `AVISO: otros procesos o el hipervisor se llevaron el ${
        formatNumber(foreign * 100)
      } % de la CPU durante las rondas; estos números no son fiables. Repita con la máquina en reposo.`,
    );
  }
  for (const [name, warnings] of Object.entries(report.childWarnings)) {
    lines.push("", `Avisos de ${name}:`, ...warnings.map((w) => `  ${w}`));
  }
  const incomplete = report.rounds.filter((r) => r.problem !== null || r.completed < r.planned);
  if (incomplete.length > 0) {
    lines.push("", `ATENCIÓN: ${incomplete.length} ronda(s) incompletas; ver el detalle arriba.`);
  }
  if (
    Object.keys(report.ratio).length > 0 || Object.keys(report.ratioBullmq).length > 0 ||
    Object.keys(report.storeRatio).length > 0
  ) {
    lines.push(
      "",
      "x/crudo, x/BullMQ y x/memoria: por debajo de 1 en tareas/s, o por encima de 1 en latencia, " +
        "x es más lento.",
    );
  }
  return lines.join("\n");
}

async function main(): Promise<number> {
  if (wantsHelp(Deno.args)) {
    console.log(USAGE);
    return 0;
  }
  let options: BenchOptions | "help";
  try {
    options = parseOptions(Deno.args);
  } catch (err) {
    if (!(err instanceof _UsageError)) throw err;
    console.error(`ERROR: ${err.message}\n${USAGE}`);
    return 2;
  }
  if (options === "help") {
    console.log(USAGE);
    return 0;
  }

  // Ctrl-C stops the measurement but still runs the clean-up; a second one exits at once.
  const interrupt = Promise.withResolvers<never>();
  interrupt.promise.catch(() => {});
  let signals = 0;
  const onSignal = (): void => {
    if (++signals > 1) Deno.exit(130);
    progress("Interrumpido: se detienen los procesos y se borran las colas…");
    interrupt.reject(new Error("Interrumpido por una señal"));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const report = await measure(options, interrupt.promise);
    console.log(options.json ? JSON.stringify(report, null, 2) : renderTable(report));
    const incomplete = report.rounds.some((r) => r.problem !== null || r.completed < r.planned);
    return incomplete ? 1 : 0;
  } catch (err) {
    console.error(`ERROR: ${err instanceof Error ? err.message : err}`);
    let cause = err instanceof Error ? err.cause : undefined;
    for (let depth = 0; cause !== undefined && depth < 5; depth++) {
      console.error(`  causa: ${cause instanceof Error ? cause.message : String(cause)}`);
      cause = cause instanceof Error ? cause.cause : undefined;
    }
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main());
