// deno-lint-ignore-file no-console
// A benchmark helper process: its ready line and its errors on the console are its interface.
/**
 * The worker of the BullMQ side: plain BullMQ on Redis, no colmena code.
 *
 * It runs one `Worker` with concurrency P on the given queue. Each job's data is the benchmark's task spec
 * (`{"type":…,"payload":…}`, which BullMQ stores as JSON and parses back), and the processor returns a small
 * result naming its type: the same trivial work as the raw worker, which echoes the body. Prints
 * `Worker BullMQ <nombre> listo` once the worker's connections are ready; stops on SIGTERM/SIGINT.
 *
 * bench/ is, on purpose, the one place that imports bullmq and ioredis: it measures colmena's nearest peer
 * in the same run.
 *
 * Usage: `deno run --allow-net --allow-env --ignore-env bench/bullmq_worker.ts --queue Q
 * [--concurrency P] [--redis-url URL] [--name NOMBRE]`
 *
 * @module
 */
import { type Job, Worker } from "bullmq";
import { Redis } from "ioredis";
import { parseArgs } from "node:util";

/** What the processor returns for each job. */
export interface BullmqResult {
  ok: true;
  type: string;
}

/** The processor's work: read the task spec's type and answer with it. */
export function processBenchJob(data: unknown): BullmqResult {
  const type = typeof data === "object" && data !== null && "type" in data ? data.type : undefined;
  return { ok: true, type: typeof type === "string" ? type : "desconocido" };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "redis-url": { type: "string", default: "redis://127.0.0.1:6379" },
      queue: { type: "string" },
      concurrency: { type: "string", default: "200" },
      name: { type: "string", default: `bullmq-${Deno.pid}` },
    },
    strict: true,
  });
  const queue = values.queue;
  const concurrency = Number(values.concurrency);
  if (!queue || !Number.isInteger(concurrency) || concurrency < 1) {
    console.error("Uso: bullmq_worker.ts --queue Q [--concurrency P] [--redis-url U] [--name N]");
    Deno.exit(2);
  }

  // A Worker needs maxRetriesPerRequest: null on its connection (its blocking reads must not give up).
  const connection = new Redis(values["redis-url"], { maxRetriesPerRequest: null });
  connection.on(
    "error",
    (err: Error) => console.error(`ERROR: conexión con Redis: ${err.message}`),
  );
  let processed = 0;
  const worker = new Worker(
    queue,
    (job: Job) => Promise.resolve(processBenchJob(job.data)),
    { connection, concurrency },
  );
  worker.on("error", (err: Error) => console.error(`ERROR: worker BullMQ: ${err.message}`));
  worker.on("completed", () => processed++);
  await worker.waitUntilReady();
  console.log(`Worker BullMQ ${values.name} listo: concurrency ${concurrency}`);

  const { promise: signal, resolve } = Promise.withResolvers<Deno.Signal>();
  Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
  await signal;
  await worker.close(true).catch(() => {});
  connection.disconnect();
  console.log(`Worker BullMQ ${values.name} detenido (${processed} tareas)`);
  Deno.exit(0);
}

if (import.meta.main) await main();
