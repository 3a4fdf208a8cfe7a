// deno-lint-ignore-file no-console
// A benchmark helper process: its ready line and its errors on the console are its interface.
/**
 * The worker of the raw baseline: plain amqplib, no colmena code.
 *
 * It consumes the task queue with prefetch P and manual acks and, for each task, publishes a persistent
 * result (the task's body, `correlationId` = the task's `messageId`) on the same confirm channel, acking the
 * task once the result is confirmed: the same durability colmena's worker keeps, minus batching, validation
 * and the task itself. Prints `Worker crudo <nombre> listo` once consuming; stops on SIGTERM/SIGINT.
 *
 * bench/ is, on purpose, the one place outside shared/adapters/ that imports amqplib: it measures the
 * broker without colmena in between.
 *
 * Usage: `deno run --allow-net --allow-env --ignore-env bench/raw_worker.ts --task-queue T --result-queue R
 * [--prefetch P] [--amqp-url URL] [--name NOMBRE]`
 *
 * @module
 */
import amqp from "amqplib";
import type { Channel } from "amqplib";
import { parseArgs } from "node:util";

/** Declares the raw baseline's queues; the publisher declares them identically. */
export async function declareRawQueues(
  ch: Channel,
  names: { taskQueue: string; resultQueue: string },
): Promise<void> {
  await ch.assertQueue(names.taskQueue, { durable: true, arguments: { "x-max-priority": 9 } });
  await ch.assertQueue(names.resultQueue, { durable: true });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "amqp-url": { type: "string", default: "amqp://guest:guest@127.0.0.1:5672" },
      "task-queue": { type: "string" },
      "result-queue": { type: "string" },
      prefetch: { type: "string", default: "200" },
      name: { type: "string", default: `crudo-${Deno.pid}` },
    },
    strict: true,
  });
  const taskQueue = values["task-queue"];
  const resultQueue = values["result-queue"];
  const prefetch = Number(values.prefetch);
  if (!taskQueue || !resultQueue || !Number.isInteger(prefetch) || prefetch < 1) {
    console.error("Uso: raw_worker.ts --task-queue T --result-queue R [--prefetch P] [--name N]");
    Deno.exit(2);
  }

  const model = await amqp.connect(values["amqp-url"], { noDelay: true });
  let stopping = false;
  model.on("error", (err: Error) => console.error(`ERROR: conexión con RabbitMQ: ${err.message}`));
  model.on("close", () => {
    if (stopping) return;
    console.error("ERROR: RabbitMQ cerró la conexión del worker crudo");
    Deno.exit(1);
  });
  const ch = await model.createConfirmChannel();
  ch.on("error", (err: Error) => console.error(`ERROR: canal del worker crudo: ${err.message}`));
  await declareRawQueues(ch, { taskQueue, resultQueue });
  await ch.prefetch(prefetch);
  let processed = 0;
  await ch.consume(taskQueue, (msg) => {
    if (msg === null) {
      console.error("ERROR: RabbitMQ canceló el consumo del worker crudo");
      return;
    }
    ch.publish("", resultQueue, msg.content, {
      persistent: true,
      correlationId: msg.properties.messageId,
      contentType: "application/json",
    }, (err: unknown) => {
      if (stopping) return;
      if (err) ch.nack(msg, false, true);
      else {
        ch.ack(msg);
        processed++;
      }
    });
  }, { noAck: false });
  console.log(`Worker crudo ${values.name} listo: prefetch ${prefetch}`);

  const { promise: signal, resolve } = Promise.withResolvers<Deno.Signal>();
  Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
  await signal;
  stopping = true;
  await model.close().catch(() => {});
  console.log(`Worker crudo ${values.name} detenido (${processed} tareas)`);
  Deno.exit(0);
}

if (import.meta.main) await main();
