/**
 * One socket write per pass of amqplib's frame multiplexer instead of one per frame.
 *
 * amqplib queues each channel's frames and, once per event-loop turn, its `Mux` moves them to the socket
 * with one `write` per frame: a turn that publishes 500 tasks (or settles 500 deliveries) makes 500 writes,
 * each a system call. Corking the socket for the length of that pass hands all of them to the socket's
 * `writev` at once: the same bytes, in the same order, in one call. The broker sees no difference; the
 * process saves the per-write CPU (measured with a confirm-channel publisher: a third less CPU, with more
 * messages per second).
 *
 * The pass also runs sooner: amqplib schedules it with `setImmediate`, a whole event-loop turn after the
 * frames were queued; here it runs at `process.nextTick`, once the code of the current turn (and its
 * microtasks) is done. Every frame queued in that turn still goes in the one pass, and a lone publish (a task
 * with no load, a worker's report) reaches the socket before anything the next turn holds runs: measured
 * with no load, about 0.05 ms less per publish.
 *
 * It reaches into amqplib's internals (`connection.muxer`, pinned by the lock file); when they are not
 * there, it leaves the connection as it is.
 *
 * @module
 */
import process from "node:process";
import type { ChannelModel } from "amqplib";

/** The parts of amqplib's `Mux` this module touches. */
interface _Mux {
  out: { cork(): void; uncork(): void };
  _readIncoming(): void;
  _scheduleRead(): void;
  scheduledRead: boolean;
  /** Set once patched, so a second call is a no-op. */
  colmenaCoalesced?: true;
}

/**
 * Makes the connection of `model` write each multiplexer pass to its socket at once. Returns whether it
 * could (`false` when amqplib's internals are not what this module expects).
 */
export function coalesceWrites(model: ChannelModel): boolean {
  const mux = (model as unknown as { connection?: { muxer?: Partial<_Mux> } }).connection?.muxer;
  if (
    mux === undefined || typeof mux._readIncoming !== "function" ||
    typeof mux._scheduleRead !== "function" || typeof mux.scheduledRead !== "boolean" ||
    typeof mux.out?.cork !== "function" || typeof mux.out.uncork !== "function"
  ) {
    return false;
  }
  if (mux.colmenaCoalesced) return true;
  const pass = mux._readIncoming.bind(mux);
  const out = mux.out;
  mux._readIncoming = () => {
    out.cork();
    try {
      pass();
    } finally {
      out.uncork();
    }
  };
  const scheduled = mux as _Mux;
  // amqplib's own, with nextTick for setImmediate: the flag and the pass are the same.
  scheduled._scheduleRead = () => {
    if (scheduled.scheduledRead) return;
    scheduled.scheduledRead = true;
    process.nextTick(() => {
      scheduled.scheduledRead = false;
      scheduled._readIncoming();
    });
  };
  mux.colmenaCoalesced = true;
  return true;
}
