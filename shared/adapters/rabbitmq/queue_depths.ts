/**
 * Queue depths for operators: a passive declare (`checkQueue`) of each queue colmena uses, on a channel of
 * its own, so that a queue that does not exist (a retry queue no worker has needed yet), which makes the
 * broker close the channel, costs a new channel and nothing else.
 *
 * @module
 */
import type { Channel, ChannelModel } from "amqplib";
import type { QueueDepth, QueueKind } from "../../ports.ts";
import { deadLetterQueue, type QueueNames, retryQueue, typeQueue } from "./names.ts";
import { retryDelays } from "./topology.ts";

/** The backoff base whose retry queues are measured: the worker's default `--retry-base-ms`. */
const DEFAULT_RETRY_BASE_MS = 1_000;

interface _Probe {
  readonly queue: string;
  readonly kind: QueueKind;
  readonly taskType?: string;
}

function _probes(names: QueueNames, taskTypes: readonly string[]): _Probe[] {
  const probes: _Probe[] = [];
  for (const taskType of taskTypes) {
    const queue = typeQueue(names.taskQueue, taskType);
    probes.push({ queue, kind: "task", taskType });
    for (const ms of retryDelays(DEFAULT_RETRY_BASE_MS)) {
      probes.push({ queue: retryQueue(queue, ms), kind: "retry", taskType });
    }
  }
  probes.push({ queue: names.resultQueue, kind: "result" });
  probes.push({ queue: deadLetterQueue(names.taskQueue), kind: "dlq" });
  return probes;
}

async function _openChannel(model: ChannelModel): Promise<Channel> {
  const ch = await model.createChannel();
  // A passive declare of a missing queue closes the channel with 404: expected, not an error to log.
  ch.on("error", () => {});
  return ch;
}

/** How long a queue found missing is left unprobed: a missing one costs the broker a channel each time. */
const MISSING_RECHECK_MS = 15_000;

/**
 * Reads the depth of every task type's queue, of their retry queues for the default backoff that exist, of
 * the result queue and of the dead-letter queue. Queues that do not exist are left out, and probed again
 * only after {@linkcode MISSING_RECHECK_MS}.
 */
export class QueueDepthReader {
  readonly #missingUntil = new Map<string, number>();

  /** The depths now, through `model`. */
  async read(
    model: ChannelModel,
    options: QueueNames & { readonly taskTypes: readonly string[] },
  ): Promise<QueueDepth[]> {
    const depths: QueueDepth[] = [];
    const now = Date.now();
    let ch: Channel | undefined;
    try {
      for (const probe of _probes(options, options.taskTypes)) {
        if ((this.#missingUntil.get(probe.queue) ?? 0) > now) continue;
        ch ??= await _openChannel(model);
        try {
          const ok = await ch.checkQueue(probe.queue);
          this.#missingUntil.delete(probe.queue);
          depths.push({ ...probe, messages: ok.messageCount, consumers: ok.consumerCount });
        } catch {
          this.#missingUntil.set(probe.queue, now + MISSING_RECHECK_MS);
          ch = undefined; // the broker closed it: the next probe opens another
        }
      }
    } finally {
      await ch?.close().catch(() => {});
    }
    return depths;
  }
}
