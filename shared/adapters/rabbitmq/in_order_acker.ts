/**
 * Runs result batches through the server's handler and acknowledges them in delivery order.
 *
 * @module
 */
import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import * as log from "../../log.ts";
import type { ResultBatchHandler } from "../../ports.ts";
import { ResultBatch } from "../../queue_messages.ts";

/** Which deliveries {@linkcode InOrderAcker} passes to its handler, and what it does with the others. */
export interface AckerCheck {
  /** Whether the delivery may be read (its signature is valid). */
  accept(msg: ConsumeMessage): boolean;
  /** Called once per rejected delivery, with the queue it came from. */
  onReject(queue: string): void;
  /** Called once per delivery when it is settled: handled (or rejected, or unreadable) and due for its ack. */
  onSettled?(msg: ConsumeMessage): void;
}

/**
 * Runs result batches through the handler one after another and acknowledges them in delivery order,
 * several at a time (`multiple`), once the handler has finished with each.
 */
export class InOrderAcker {
  readonly #ch: Channel;
  readonly #handler: ResultBatchHandler;
  readonly #check: AckerCheck | undefined;
  #chain: Promise<void> = Promise.resolve();
  #lastDone: ConsumeMessage | undefined;
  #scheduled = false;
  #dead = false;

  constructor(ch: Channel, handler: ResultBatchHandler, check?: AckerCheck) {
    this.#ch = ch;
    this.#handler = handler;
    this.#check = check;
    ch.on("close", () => {
      this.#dead = true;
    });
  }

  /**
   * Takes one delivery of the result consumers of `queue`; `null` (the broker cancelled them) closes `model`.
   * A message the check rejects is acknowledged in its turn without reaching the handler.
   */
  receive(msg: ConsumeMessage | null, model: ChannelModel, queue: string): void {
    if (msg === null) {
      log.warn("RabbitMQ canceló el consumo de resultados; se reconecta");
      model.close().catch(() => {});
      return;
    }
    let batch: ResultBatch | undefined;
    let rejected = false;
    if (this.#check !== undefined && !this.#check.accept(msg)) {
      rejected = true;
      this.#check.onReject(queue);
    } else {
      try {
        const parsed = ResultBatch.safeParse(JSON.parse(msg.content.toString("utf8")));
        if (parsed.success) batch = parsed.data;
      } catch {
        // handled below: unreadable
      }
    }
    // The handler starts at once, so that batches overlap their store round trips; the acks still
    // follow delivery order, each only after its own batch and every earlier one are done.
    const work: Promise<unknown> = rejected
      ? Promise.resolve("rejected")
      : batch === undefined
      ? Promise.resolve("unreadable")
      : Promise.resolve().then(() => this.#handler(batch));
    work.catch(() => {}); // observed in order below
    this.#chain = this.#chain.then(async () => {
      if (this.#dead) return;
      try {
        if ((await work) === "unreadable") log.warn("Mensaje de resultados ilegible; se descarta");
        this.#done(msg);
        this.#check?.onSettled?.(msg);
      } catch (err) {
        // Not acknowledged, nor anything after it: the channel is closed so that they come again.
        this.#dead = true;
        log.error("No se pudo procesar un lote de resultados; se reintentará", err);
        model.close().catch(() => {});
      }
    });
  }

  #done(msg: ConsumeMessage): void {
    this.#lastDone = msg;
    if (this.#scheduled) return;
    this.#scheduled = true;
    const send = () => {
      this.#scheduled = false;
      const last = this.#lastDone;
      this.#lastDone = undefined;
      if (last === undefined || this.#dead) return;
      try {
        this.#ch.ack(last, true);
      } catch {
        // The channel is closing (a drain, a lost connection): what it did not ack comes again, and the
        // store absorbs the repeats.
        this.#dead = true;
      }
    };
    // On a timer (a millisecond, Deno's shortest), not at the end of this turn: acking a lone batch at once
    // reordered deliveries around the byte budget's cancel and new consume on quorum queues
    // (rabbitmq_result_budget_test), and this ack is not on any result's path.
    setTimeout(send, 0);
  }
}
