/**
 * An `echo` handler for the tests of isolated registrations: says whether it ran on the main thread.
 *
 * @module
 */
import { isMainThread } from "node:worker_threads";

/** Echoes the message, and whether it ran on the main thread. */
export function echo({ message }: { message: unknown }): { message: unknown; mainThread: boolean } {
  return { message, mainThread: isMainThread };
}
