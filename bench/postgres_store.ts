// deno-lint-ignore-file no-console
/**
 * The CPU the PostgreSQL task store costs per task, without RabbitMQ, workers or clients: drives a real
 * `PostgresTaskStore` the way the server does under load (each turn of the event loop, `--grupo` creates and
 * the results of the tasks created `--retraso-fin` turns before; at most `--en-vuelo` writes waiting) and
 * reports, per task, the CPU of this process and of every PostgreSQL process on the machine (from
 * `/proc/<pid>/schedstat`, Linux), plus the WAL PostgreSQL wrote.
 *
 * `--modulo` names other copies of `server/stores/postgres.ts` (say, of another commit, extracted with
 * `git archive`); the rounds then alternate between them, A B A B …, each round in a schema of its own, so
 * that two versions are compared in the same minutes of a shared machine.
 *
 * ```
 * deno task bench:postgres --tareas 20000 --rondas 3
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { setImmediate } from "node:timers";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
// @ts-types="@types/pg"
import pg from "pg";
import type { TaskStore } from "../shared/ports.ts";
import { newTaskId } from "../server/task_ids.ts";
import { findPostgresPids } from "./processes.ts";
import { median } from "./stats.ts";
import { benchResult, benchTask } from "./store_fixtures.ts";

const USAGE = `Uso: deno task bench:postgres [opciones]
  --tareas N           tareas por ronda                                   [20000]
  --rondas R           rondas por versión, alternadas                     [3]
  --grupo G            altas por vuelta del bucle de eventos              [200]
  --retraso-fin T      vueltas entre el alta y el resultado               [4]
  --en-vuelo N         escrituras a la espera de su COMMIT, como máximo   [3000]
  --modulo RUTA        otra copia de server/stores/postgres.ts; se puede repetir
                       (por defecto, la de este árbol)
  --database-url URL   PostgreSQL  [DATABASE_URL, postgres://postgres@127.0.0.1:5432/test]
  --help, -h           esta ayuda`;

interface StoreModule {
  openPostgresTaskStore(url: string, options: { schema: string }): Promise<TaskStore>;
  dropPostgresSchema(url: string, schema: string): Promise<void>;
}

/** Nanoseconds every PostgreSQL process has run (those that ended during a round are not counted). */
async function postgresNs(pids: readonly number[]): Promise<Map<number, number>> {
  const ns = new Map<number, number>();
  for (const pid of pids) {
    try {
      ns.set(pid, Number((await Deno.readTextFile(`/proc/${pid}/schedstat`)).split(" ")[0]));
    } catch {
      // Ended since it was listed.
    }
  }
  return ns;
}

async function postgresDeltaNs(before: Map<number, number>): Promise<number> {
  const after = await postgresNs(await findPostgresPids());
  let total = 0;
  for (const [pid, ns] of after) total += ns - (before.get(pid) ?? 0);
  return total;
}

interface Round {
  readonly seconds: number;
  readonly processUs: number;
  readonly postgresUs: number;
  readonly walBytes: number;
}

async function walLsn(client: pg.Client): Promise<bigint> {
  const { rows } = await client.query<{ lsn: string }>(
    "SELECT (pg_current_wal_lsn() - '0/0')::text AS lsn",
  );
  return BigInt(rows[0]?.lsn.split(".")[0] ?? "0");
}

async function round(module: StoreModule, url: string, options: {
  tasks: number;
  group: number;
  endDelay: number;
  maxPending: number;
}): Promise<Round> {
  const schema = `bench_pg_${crypto.randomUUID().replaceAll("-", "_").slice(0, 12)}`;
  const store = await module.openPostgresTaskStore(url, { schema });
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    // Warm-up: every connection the store uses has its statements prepared before the measure.
    const warm = Array.from({ length: 2_000 }, () => newTaskId());
    const now0 = new Date().toISOString();
    await Promise.all(warm.map((id) => store.create(benchTask(id, now0))));
    await Promise.all(warm.map((id) => store.complete(benchResult(id, now0))));

    const ids: string[] = Array.from({ length: options.tasks }, () => newTaskId());
    const turns = Math.ceil(options.tasks / options.group);
    const pending = new Set<Promise<unknown>>();
    const track = (promise: Promise<unknown>) => {
      pending.add(promise);
      promise.finally(() => pending.delete(promise));
    };
    const lsn0 = await walLsn(admin);
    const pg0 = await postgresNs(await findPostgresPids());
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let turn = 0; turn < turns + options.endDelay; turn++) {
      const now = new Date().toISOString();
      const slice = (at: number) =>
        at < 0 || at >= turns ? [] : ids.slice(at * options.group, (at + 1) * options.group);
      for (const id of slice(turn)) track(store.create(benchTask(id, now)));
      for (const id of slice(turn - options.endDelay)) track(store.complete(benchResult(id, now)));
      await new Promise((resolve) => setImmediate(resolve));
      while (pending.size > options.maxPending) await Promise.race(pending);
    }
    await Promise.all(pending);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const postgres = await postgresDeltaNs(pg0);
    const wal = await walLsn(admin);
    return {
      seconds,
      processUs: (cpu.user + cpu.system) / options.tasks,
      postgresUs: postgres / 1000 / options.tasks,
      walBytes: Number(wal - lsn0) / options.tasks,
    };
  } finally {
    await admin.end();
    await store.close();
    await module.dropPostgresSchema(url, schema);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      tareas: { type: "string", default: "20000" },
      rondas: { type: "string", default: "3" },
      grupo: { type: "string", default: "200" },
      "retraso-fin": { type: "string", default: "4" },
      "en-vuelo": { type: "string", default: "3000" },
      modulo: { type: "string", multiple: true },
      "database-url": {
        type: "string",
        default: Deno.env.get("DATABASE_URL") ?? "postgres://postgres@127.0.0.1:5432/test",
      },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return console.log(USAGE);
  const options = {
    tasks: Number(values.tareas),
    group: Number(values.grupo),
    endDelay: Number(values["retraso-fin"]),
    maxPending: Number(values["en-vuelo"]),
  };
  const paths = values.modulo ?? ["../server/stores/postgres.ts"];
  const modules: { path: string; module: StoreModule }[] = [];
  for (const path of paths) {
    const url = path.startsWith("../")
      ? new URL(path, import.meta.url)
      : pathToFileURL(resolve(path));
    modules.push({ path, module: await import(url.href) as StoreModule });
  }
  const rounds = new Map<string, Round[]>(paths.map((path) => [path, []]));
  for (let i = 0; i < Number(values.rondas); i++) {
    for (const { path, module } of modules) {
      const r = await round(module, values["database-url"], options);
      rounds.get(path)?.push(r);
      console.log(
        `${path} ronda ${i + 1}: ${
          Math.round(options.tasks / r.seconds)
        } tareas/s · µs/tarea: proceso ${r.processUs.toFixed(1)} · PostgreSQL ${
          r.postgresUs.toFixed(1)
        } · WAL ${Math.round(r.walBytes)} B/tarea`,
      );
    }
  }
  for (const [path, list] of rounds) {
    const med = (pick: (r: Round) => number) => median(list.map(pick)).toFixed(1);
    console.log(
      `${path} mediana: ${med((r) => options.tasks / r.seconds)} tareas/s · µs/tarea: proceso ${
        med((r) => r.processUs)
      } · PostgreSQL ${med((r) => r.postgresUs)} · WAL ${med((r) => r.walBytes)} B/tarea`,
    );
  }
}

if (import.meta.main) await main();
