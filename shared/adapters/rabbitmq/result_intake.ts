/**
 * A byte budget for the result messages a server holds: {@linkcode IntakeBudget} counts them and says how
 * many the broker may push; {@linkcode ResultIntake} pauses the result consumers (cancels them) while the
 * budget is spent and consumes again, with a prefetch sized by bytes, once it has half drained.
 *
 * @module
 */
import type { Channel, ConsumeMessage } from "amqplib";

/** Default of `maxResultBytesInFlight`: bytes of result messages held at once (64 MiB). */
export const DEFAULT_RESULT_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

/** The size assumed for a message before any has arrived: a cautious first prefetch. */
const FIRST_ESTIMATE_BYTES = 1024 * 1024;

/** How fast the size estimate forgets a large message (it follows a larger one at once). */
const ESTIMATE_DECAY = 0.95;

/** Options of {@linkcode IntakeBudget}. */
export interface IntakeBudgetOptions {
  /** Bytes of messages held (received and not yet settled) past which no more are taken. */
  maxBytes: number;
  /** The most unsettled messages per consumer, however small. */
  maxPrefetch: number;
  /** The consumers that share the budget; each gets its share of the room. @defaultValue `1` */
  consumers?: number;
}

/**
 * Counts the bytes of result messages received and not yet settled, and sizes the per-consumer prefetch so
 * that what the broker may still push fits in the room left: the broker counts messages, not bytes.
 */
export class IntakeBudget {
  readonly #maxBytes: number;
  readonly #maxPrefetch: number;
  readonly #consumers: number;
  #held = 0;
  #estimate = FIRST_ESTIMATE_BYTES;

  constructor(options: IntakeBudgetOptions) {
    if (!(options.maxBytes > 0)) {
      throw new RangeError(`maxBytes must be positive: ${options.maxBytes}`);
    }
    this.#maxBytes = options.maxBytes;
    this.#maxPrefetch = Math.max(1, options.maxPrefetch);
    this.#consumers = Math.max(1, options.consumers ?? 1);
  }

  /** Bytes received and not yet settled. */
  get held(): number {
    return this.#held;
  }

  /** Whether the budget is spent: take no more. */
  get full(): boolean {
    return this.#held >= this.#maxBytes;
  }

  /** Whether enough has drained to take more again (half the budget: no pause and resume per message). */
  get roomy(): boolean {
    return this.#held <= this.#maxBytes / 2;
  }

  /** Notes a message of `bytes` received. */
  take(bytes: number): void {
    this.#held += bytes;
    this.#estimate = Math.max(
      bytes,
      this.#estimate * ESTIMATE_DECAY + bytes * (1 - ESTIMATE_DECAY),
    );
  }

  /** Notes a message of `bytes` settled (handled and acknowledged, or dropped with its channel). */
  settle(bytes: number): void {
    this.#held = Math.max(0, this.#held - bytes);
  }

  /** The prefetch for a consumer started now: its share of the room left, in messages of the size seen. */
  prefetch(): number {
    const room = Math.max(0, this.#maxBytes - this.#held) / this.#consumers;
    return Math.min(this.#maxPrefetch, Math.max(1, Math.floor(room / this.#estimate)));
  }
}

/** What {@linkcode ResultIntake} consumes. */
export interface IntakeQueue {
  readonly queue: string;
  readonly onMessage: (msg: ConsumeMessage | null) => void;
}

/**
 * Runs the result consumers of one channel within an {@linkcode IntakeBudget}. A consumer's prefetch holds
 * for consumers started after it (which also suits quorum queues, which refuse a channel-wide one), so a new
 * prefetch takes a cancel and a new consume. Deliveries already pushed stay with the channel, unacknowledged,
 * through the cancel: they are handled and acknowledged as before, in delivery order.
 */
export class ResultIntake {
  readonly #ch: Channel;
  readonly #budget: IntakeBudget;
  readonly #queues: readonly IntakeQueue[];
  #tags: string[] = [];
  /** The prefetch the running consumers were started with; 0 while paused. */
  #prefetch = 0;
  #busy = false;
  #closed = false;

  constructor(ch: Channel, budget: IntakeBudget, queues: readonly IntakeQueue[]) {
    this.#ch = ch;
    this.#budget = budget;
    this.#queues = queues;
    ch.on("close", () => {
      this.#closed = true;
    });
  }

  /** Starts the consumers. */
  async start(): Promise<void> {
    // Deliveries may come before the last consumer is started: they wait for it to adjust.
    this.#busy = true;
    try {
      await this.#consume();
    } finally {
      this.#busy = false;
    }
    this.#adjust();
  }

  /** Counts a delivery in; pauses the consumers once the budget is spent. */
  received(msg: ConsumeMessage): void {
    this.#budget.take(msg.content.length);
    this.#adjust();
  }

  /** Counts a delivery out (handled, acknowledged or dropped); resumes once half the budget is free. */
  settled(msg: ConsumeMessage): void {
    this.#budget.settle(msg.content.length);
    this.#adjust();
  }

  /** Stops for good: no consume again. */
  stop(): void {
    this.#closed = true;
  }

  #adjust(): void {
    if (this.#busy || this.#closed) return;
    const budget = this.#budget;
    const running = this.#prefetch > 0;
    if (running && budget.full) {
      this.#run(() => this.#cancel());
    } else if (!running && budget.roomy) {
      this.#run(() => this.#consume());
    } else if (running && !budget.full && budget.prefetch() >= 2 * this.#prefetch) {
      // Smaller messages than feared: a larger prefetch keeps the handler busy.
      this.#run(async () => {
        await this.#cancel();
        await this.#consume();
      });
    }
  }

  #run(step: () => Promise<void>): void {
    this.#busy = true;
    step().then(
      () => {
        this.#busy = false;
        this.#adjust();
      },
      () => {
        // The channel is closing: the session reconnects and a new intake takes over.
        this.#closed = true;
      },
    );
  }

  async #consume(): Promise<void> {
    if (this.#closed) return;
    const prefetch = this.#budget.prefetch();
    await this.#ch.prefetch(prefetch);
    const tags: string[] = [];
    for (const { queue, onMessage } of this.#queues) {
      const { consumerTag } = await this.#ch.consume(queue, onMessage, { noAck: false });
      tags.push(consumerTag);
    }
    this.#tags = tags;
    this.#prefetch = prefetch;
  }

  async #cancel(): Promise<void> {
    const tags = this.#tags;
    this.#tags = [];
    this.#prefetch = 0;
    await Promise.all(tags.map((tag) => this.#ch.cancel(tag)));
  }
}
