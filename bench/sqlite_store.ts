// deno-lint-ignore-file no-console
/**
 * The CPU the SQLite task store costs per task, without RabbitMQ, workers or clients: drives a real
 * `SqliteTaskStore` the way the server does under load and reports the CPU time of the main thread and of
 * the writer thread per task, read from `/proc/self/task/<tid>/schedstat` (Linux), so that two versions of
 * the store can be compared on a busy machine.
 *
 * Each turn of the event loop submits `--grupo` tasks (`create`), reports the start of a share of the tasks
 * submitted `--retraso-inicio` turns before (`markStarted`, as the server does with a result batch's
 * "started" notices) and the results of the tasks submitted `--retraso-fin` turns before (`complete`); at
 * most `--en-vuelo` writes wait for their COMMIT, as the clients' windows bound them in the server. By
 * default no task has a start notice: under `deno task bench`'s load none does (a worker sends none for a
 * task that ends in the same turn, and these tasks take microseconds; counted in the server).
 *
 * ```
 * deno task bench:sqlite --tareas 40000 --rondas 3
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { setImmediate } from "node:timers";
import { openSqliteTaskStore } from "../server/stores/sqlite.ts";
import type { StartedNotice } from "../shared/queue_messages.ts";
import { newTaskId } from "../server/task_ids.ts";
import { median } from "./stats.ts";
import { benchResult, benchTask } from "./store_fixtures.ts";

const USAGE = `Uso: deno task bench:sqlite [opciones]
  --tareas N           tareas por ronda                                   [40000]
  --rondas R           rondas, cada una en un fichero nuevo               [3]
  --grupo G            altas por vuelta del bucle de eventos              [200]
  --inicios F          fracción de tareas con aviso de inicio (0–1)       [0]
  --retraso-inicio T   vueltas entre el alta y el aviso de inicio         [2]
  --retraso-fin T      vueltas entre el alta y el resultado               [4]
  --en-vuelo N         escrituras a la espera de su COMMIT, como máximo   [3000]
  --previas N          tareas terminadas en el fichero antes de medir     [0]
  --ids TIPO           ids de tarea: "servidor" (los de newTaskId) o "aleatorios"
                       (UUID v4, los de antes)                            [servidor]
  --dir RUTA           carpeta de los ficheros (se borra cada uno)        [temporal]
  --help, -h           esta ayuda`;

/** Nanoseconds a thread has run, from its `schedstat`. */
async function threadNs(tid: string): Promise<number> {
  const text = await Deno.readTextFile(`/proc/self/task/${tid}/schedstat`);
  return Number(text.split(" ")[0]);
}

/** The ids of the main thread and of the store's writer thread (Deno names worker threads `worker-N`). */
async function threads(): Promise<{ main: string; writers: string[] }> {
  const writers: string[] = [];
  for await (const entry of Deno.readDir("/proc/self/task")) {
    const comm = (await Deno.readTextFile(`/proc/self/task/${entry.name}/comm`)).trim();
    if (comm.startsWith("worker-")) writers.push(entry.name);
  }
  return { main: String(Deno.pid), writers };
}

function started(taskId: string, now: string): StartedNotice {
  return { taskId, origin: "s1", worker: "w1", startedAt: now, attempt: 1 };
}

interface Round {
  readonly seconds: number;
  readonly mainUs: number;
  readonly writerUs: number;
  readonly processUs: number;
}

async function round(path: string, options: {
  tasks: number;
  group: number;
  startShare: number;
  startDelay: number;
  endDelay: number;
  maxPending: number;
  newId: () => string;
  prior: number;
}): Promise<Round> {
  const store = await openSqliteTaskStore(path);
  try {
    // The history of a server that has run for a while: finished tasks, by the same kind of id.
    for (let done = 0; done < options.prior; done += 1_000) {
      const now = new Date().toISOString();
      const batch = Array.from({ length: Math.min(1_000, options.prior - done) }, options.newId);
      await Promise.all(batch.map((id) => store.create(benchTask(id, now))));
      await Promise.all(batch.map((id) => store.complete(benchResult(id, now))));
    }
    const ids: string[] = Array.from({ length: options.tasks }, options.newId);
    const turns = Math.ceil(options.tasks / options.group);
    const pending = new Set<Promise<unknown>>();
    const track = (promise: Promise<unknown>) => {
      pending.add(promise);
      promise.finally(() => pending.delete(promise));
    };
    // A first write starts the writer thread's own work, so that it is there to be measured.
    await store.create(benchTask(crypto.randomUUID(), new Date().toISOString()));
    const { main, writers } = await threads();
    const before = { main: await threadNs(main), writers: 0, cpu: process.cpuUsage() };
    for (const tid of writers) before.writers += await threadNs(tid);
    const t0 = performance.now();
    const startEvery = options.startShare > 0 ? Math.round(1 / options.startShare) : 0;
    for (let turn = 0; turn < turns + options.endDelay; turn++) {
      const now = new Date().toISOString();
      const slice = (at: number) =>
        at < 0 || at >= turns ? [] : ids.slice(at * options.group, (at + 1) * options.group);
      for (const id of slice(turn)) track(store.create(benchTask(id, now)));
      // One result batch: its notices, then its results, as `ResultRouter.onResults` writes them.
      const notices = slice(turn - options.startDelay)
        .filter((_, i) => startEvery > 0 && i % startEvery === 0)
        .map((id) => store.markStarted(started(id, now)));
      const results = slice(turn - options.endDelay).map((id) =>
        store.complete(benchResult(id, now))
      );
      track(Promise.all([Promise.all(notices), Promise.all(results)]));
      await new Promise((resolve) => setImmediate(resolve));
      while (pending.size > options.maxPending) await Promise.race(pending);
    }
    await Promise.all(pending);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(before.cpu);
    let writerNs = 0;
    for (const tid of writers) writerNs += await threadNs(tid);
    return {
      seconds,
      mainUs: ((await threadNs(main)) - before.main) / 1000 / options.tasks,
      writerUs: (writerNs - before.writers) / 1000 / options.tasks,
      processUs: (cpu.user + cpu.system) / options.tasks,
    };
  } finally {
    await store.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      tareas: { type: "string", default: "40000" },
      rondas: { type: "string", default: "3" },
      grupo: { type: "string", default: "200" },
      inicios: { type: "string", default: "0" },
      "retraso-inicio": { type: "string", default: "2" },
      "retraso-fin": { type: "string", default: "4" },
      "en-vuelo": { type: "string", default: "3000" },
      ids: { type: "string", default: "servidor" },
      previas: { type: "string", default: "0" },
      dir: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return console.log(USAGE);
  const options = {
    tasks: Number(values.tareas),
    group: Number(values.grupo),
    startShare: Number(values.inicios),
    startDelay: Number(values["retraso-inicio"]),
    endDelay: Number(values["retraso-fin"]),
    maxPending: Number(values["en-vuelo"]),
    prior: Number(values.previas),
    newId: values.ids === "aleatorios" ? () => crypto.randomUUID() : newTaskId,
  };
  if (values.ids !== "servidor" && values.ids !== "aleatorios") {
    throw new RangeError(`Cannot use --ids "${values.ids}": expected "servidor" or "aleatorios"`);
  }
  const dir = values.dir ?? await Deno.makeTempDir({ prefix: "colmena-bench-sqlite-" });
  const rounds: Round[] = [];
  for (let i = 0; i < Number(values.rondas); i++) {
    const path = join(dir, `ronda-${i}.db`);
    const r = await round(path, options);
    rounds.push(r);
    for (const suffix of ["", "-wal", "-shm"]) await Deno.remove(path + suffix).catch(() => {});
    console.log(
      `ronda ${i + 1}: ${
        Math.round(options.tasks / r.seconds)
      } tareas/s · µs/tarea: hilo principal ${r.mainUs.toFixed(1)} · hilo de escritura ${
        r.writerUs.toFixed(1)
      } · proceso ${r.processUs.toFixed(1)}`,
    );
  }
  if (values.dir === undefined) await Deno.remove(dir, { recursive: true });
  const med = (pick: (r: Round) => number) => median(rounds.map(pick)).toFixed(1);
  console.log(
    `mediana µs/tarea: hilo principal ${med((r) => r.mainUs)} · hilo de escritura ${
      med((r) => r.writerUs)
    } · proceso ${med((r) => r.processUs)}`,
  );
}

if (import.meta.main) await main();
