/**
 * Acknowledges the deliveries of one channel in as few `basic.ack` frames as the broker's semantics allow:
 * once per event-loop turn, one ack with `multiple` over the contiguous prefix of settled deliveries.
 *
 * A delivery tag grows by one with each delivery on a channel, and an ack with `multiple` settles every
 * unsettled tag up to the one given. So a multiple ack may only cover a run of deliveries that were all
 * settled for an ack; a delivery still running, or whose copy is being made again later, stays unacked
 * whatever completes after it. Settled deliveries after such a gap are acked one by one in the same flush,
 * so that they do not hold the prefetch while the gap lasts.
 *
 * @module
 */
import type { Channel, ConsumeMessage } from "amqplib";
import * as log from "../../log.ts";

/** The part of a channel the window settles deliveries on. */
export type AckChannel = Pick<Channel, "ack" | "nack">;

/** Acks of one channel, batched per event-loop turn; see the module doc. */
export class AckWindow {
  readonly #ch: AckChannel;
  /** Deliveries not yet settled on the broker, by delivery tag, in delivery (tag) order. */
  readonly #held = new Map<number, ConsumeMessage>();
  /** Tags settled for an ack since the last flush. */
  readonly #acked = new Set<number>();
  #scheduled = false;
  #closed = false;

  constructor(ch: AckChannel) {
    this.#ch = ch;
  }

  /** Notes a delivery received on the channel: it is held until acked, requeued or dead-lettered. */
  hold(msg: ConsumeMessage): void {
    this.#held.set(msg.fields.deliveryTag, msg);
  }

  /** Settles a held delivery for an ack, sent at the end of this event-loop turn (see {@linkcode flush}). */
  ack(msg: ConsumeMessage): void {
    const tag = msg.fields.deliveryTag;
    if (this.#closed || !this.#held.has(tag)) return;
    this.#acked.add(tag);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      try {
        this.flush();
      } catch (err) {
        log.error("No se pudo confirmar una tarea a RabbitMQ; se volverá a entregar", err);
      }
    }, 0);
  }

  /** Rejects a held delivery at once, on its own: `requeue` puts it back, otherwise it is dead-lettered. */
  nack(msg: ConsumeMessage, requeue: boolean): void {
    const tag = msg.fields.deliveryTag;
    if (this.#closed || !this.#held.delete(tag)) return;
    this.#acked.delete(tag);
    this.#ch.nack(msg, false, requeue);
  }

  /**
   * Sends the acks settled so far: one `multiple` ack over the longest run of settled deliveries at the head
   * (the oldest held), then one single ack for each settled delivery past the first unsettled one.
   */
  flush(): void {
    if (this.#closed || this.#acked.size === 0) return;
    let last: ConsumeMessage | undefined;
    for (const [tag, msg] of this.#held) {
      if (!this.#acked.has(tag)) break;
      this.#held.delete(tag);
      this.#acked.delete(tag);
      last = msg;
    }
    if (last !== undefined) this.#ch.ack(last, true);
    for (const tag of this.#acked) {
      const msg = this.#held.get(tag);
      this.#held.delete(tag);
      if (msg !== undefined) this.#ch.ack(msg, false);
    }
    this.#acked.clear();
  }

  /** Forgets everything: the channel is gone, and the broker delivers its unacked deliveries again. */
  close(): void {
    this.#closed = true;
    this.#held.clear();
    this.#acked.clear();
  }

  /** Deliveries held, settled or not: for tests and metrics. */
  get size(): number {
    return this.#held.size;
  }
}
