/**
 * The raw baseline's publisher, plain amqplib with no colmena code and no TCP hop before the broker.
 *
 * It publishes persistent tasks with publisher confirms to a durable queue (priorities 0–9, like colmena's
 * task queue), keeps a fixed number in flight, and consumes the results with manual acks on a second channel
 * of the same connection, as a colmena server does. A task is in flight from its publish until its result
 * arrives; its latency spans the same. Also here: deleting the benchmark's queues at the end.
 *
 * bench/ is, on purpose, the one place outside shared/adapters/ that imports amqplib: it measures the
 * broker without colmena in between.
 *
 * @module
 */
import amqp from "amqplib";
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from "amqplib";
import { Buffer } from "node:buffer";
import { declareRawQueues } from "./raw_worker.ts";
import type { RoundResult } from "./stats.ts";

/** Options of {@linkcode RawPublisher.run}. */
export interface RawRoundOptions {
  /** Tasks in the round. */
  tasks: number;
  /** Tasks published and without a result yet, at most. */
  inFlight: number;
  /** Encoded task specs, cycled through; they are the message bodies. */
  taskSpecs: readonly string[];
  /** The round gives up after this long. */
  timeoutMs: number;
}

/** One round in progress. */
interface _Round {
  readonly id: string;
  onResult(seq: number, now: number): void;
  fail(problem: string): void;
}

/** Publishes tasks and consumes their results on one connection, one round at a time. */
export class RawPublisher {
  readonly #model: ChannelModel;
  readonly #pub: ConfirmChannel;
  readonly #sub: Channel;
  readonly #taskQueue: string;
  #round: _Round | undefined;
  #rounds = 0;
  #closing = false;

  private constructor(model: ChannelModel, pub: ConfirmChannel, sub: Channel, taskQueue: string) {
    this.#model = model;
    this.#pub = pub;
    this.#sub = sub;
    this.#taskQueue = taskQueue;
  }

  /** Connects (with `noDelay`: Nagle would add ~44 ms per trip), declares the queues, starts consuming. */
  static async open(
    url: string,
    names: { taskQueue: string; resultQueue: string; resultPrefetch: number },
  ): Promise<RawPublisher> {
    const model = await amqp.connect(url, { noDelay: true });
    const pub = await model.createConfirmChannel();
    await declareRawQueues(pub, names);
    const sub = await model.createChannel();
    await sub.prefetch(names.resultPrefetch);
    const publisher = new RawPublisher(model, pub, sub, names.taskQueue);
    const lost = (what: string) => () => {
      if (!publisher.#closing) publisher.#round?.fail(`RabbitMQ cerró ${what}`);
    };
    model.on("error", () => {});
    model.on("close", lost("la conexión"));
    pub.on("error", () => {});
    pub.on("close", lost("el canal de publicación"));
    sub.on("error", () => {});
    sub.on("close", lost("el canal de resultados"));
    await sub.consume(names.resultQueue, (msg) => publisher.#onResult(msg), { noAck: false });
    return publisher;
  }

  /** The version RabbitMQ reports, e.g. `3.10.8`. */
  get brokerVersion(): string {
    return String(this.#model.connection.serverProperties.version ?? "desconocida");
  }

  #onResult(msg: ConsumeMessage | null): void {
    if (msg === null) {
      this.#round?.fail("RabbitMQ canceló el consumo de resultados");
      return;
    }
    const now = performance.now();
    this.#sub.ack(msg);
    const round = this.#round;
    const id = String(msg.properties.correlationId ?? "");
    const dot = id.indexOf(".");
    if (round === undefined || id.slice(0, dot) !== round.id) return;
    round.onResult(Number(id.slice(dot + 1)), now);
  }

  /** Runs one round and returns what it measured. */
  run(options: RawRoundOptions): Promise<RoundResult> {
    if (this.#round !== undefined) throw new TypeError("Cannot run a round: one is in progress");
    const roundId = (++this.#rounds).toString(36);
    const bodies = options.taskSpecs.map((spec) => Buffer.from(spec));
    const sentAt = new Float64Array(options.tasks);
    const seen = new Uint8Array(options.tasks);
    const latencies = new Float64Array(options.tasks);
    const acceptLatencies = new Float64Array(options.tasks);
    let acceptCount = 0;
    const { promise, resolve } = Promise.withResolvers<RoundResult>();
    let latencyCount = 0;
    let errors = 0;
    let sent = 0;
    let done = 0;
    let lastResultAt = 0;
    let start = 0;

    const finish = (problem: string | null): void => {
      if (this.#round !== round) return;
      this.#round = undefined;
      clearTimeout(timer);
      resolve({
        planned: options.tasks,
        completed: latencyCount,
        failed: 0,
        errors,
        elapsedMs: (lastResultAt || performance.now()) - start,
        latencies,
        latencyCount,
        acceptLatencies,
        acceptCount,
        problem,
      });
    };
    const settleOne = (): void => {
      done++;
      if (done === options.tasks) finish(null);
      else if (sent < options.tasks) publish();
    };
    const publish = (): void => {
      const seq = sent++;
      sentAt[seq] = performance.now();
      try {
        this.#pub.publish("", this.#taskQueue, bodies[seq % bodies.length]!, {
          persistent: true,
          priority: 0,
          messageId: `${roundId}.${seq}`,
          contentType: "application/json",
        }, (err: unknown) => {
          if (this.#round !== round) return;
          if (err) {
            errors++;
            settleOne();
          } else {
            acceptLatencies[acceptCount++] = performance.now() - sentAt[seq]!;
          }
        });
      } catch (err) {
        finish(`no se pudo publicar: ${err instanceof Error ? err.message : err}`);
      }
    };
    const round: _Round = {
      id: roundId,
      onResult: (seq, now) => {
        if (!(seq >= 0 && seq < sent) || seen[seq] === 1) {
          errors++;
          return;
        }
        seen[seq] = 1;
        latencies[latencyCount++] = now - sentAt[seq]!;
        lastResultAt = now;
        settleOne();
      },
      fail: (problem) => finish(problem),
    };
    if (options.tasks === 0) throw new RangeError("Cannot run a round of 0 tasks");
    this.#round = round;
    const timer = setTimeout(
      () => finish("se alcanzó el tiempo límite de la ronda"),
      options.timeoutMs,
    );
    start = performance.now();
    const first = Math.min(options.inFlight, options.tasks);
    for (let i = 0; i < first && this.#round === round; i++) publish();
    return promise;
  }

  /** Closes the connection; a round in progress is abandoned. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#round?.fail("el publicador se cerró");
    await this.#model.close().catch(() => {});
  }
}

/**
 * Deletes queues and exchanges, each on its own channel (a failed delete closes its channel); returns the
 * names that could not be deleted. Deleting a queue that does not exist succeeds.
 */
export async function deleteTopology(
  url: string,
  names: { queues: readonly string[]; exchanges: readonly string[] },
): Promise<string[]> {
  const failed: string[] = [];
  const model = await amqp.connect(url, { noDelay: true });
  model.on("error", () => {});
  try {
    const targets = [
      ...names.queues.map((name) => ({ name, kind: "queue" as const })),
      ...names.exchanges.map((name) => ({ name, kind: "exchange" as const })),
    ];
    for (const { name, kind } of targets) {
      let ch: Channel | undefined;
      try {
        ch = await model.createChannel();
        ch.on("error", () => {});
        if (kind === "queue") await ch.deleteQueue(name);
        else await ch.deleteExchange(name);
      } catch {
        failed.push(name);
      } finally {
        await ch?.close().catch(() => {});
      }
    }
  } finally {
    await model.close().catch(() => {});
  }
  return failed;
}

/** Connects once to read the version RabbitMQ reports; throws when the broker cannot be reached. */
export async function readBrokerVersion(url: string): Promise<string> {
  const model = await amqp.connect(url, { noDelay: true });
  model.on("error", () => {});
  try {
    return String(model.connection.serverProperties.version ?? "desconocida");
  } finally {
    await model.close().catch(() => {});
  }
}
