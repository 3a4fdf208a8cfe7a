/**
 * What each thread of the {@linkcode ThreadPool} runs: loads the handler's module (once per thread) and calls
 * the named export with the payload. A {@linkcode ColmenaError} crosses back as its wire shape, so its code
 * survives the hop; anything else is rethrown for the pool to report.
 *
 * @module
 */
import { ColmenaError, type WireError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import type { TaskContext } from "../shared/task_definition.ts";
import { loadExport } from "./exports.ts";

// A thread's handler is stopped by ending its thread, so its signal never aborts.
const NEVER = new AbortController().signal;

/** One call into a thread: which export of which module, and its payload. */
export interface ThreadCall {
  /** The module's URL, as a string. */
  readonly module: string;
  /** The name of the exported function. */
  readonly export: string;
  /** The validated payload. */
  readonly payload: unknown;
  /** The task's id, for the handler's context and log lines. */
  readonly taskId?: string;
  /** 1 for the first attempt. */
  readonly attempt?: number;
}

/** What a thread answers: the handler's output, or a typed error it threw. */
export type ThreadAnswer = { readonly output: unknown } | { readonly error: WireError };

// A handler's error that escapes it (thrown in a timer, a promise nobody awaits) would end the whole worker
// process, not just this thread: it fails the call in progress instead (one at a time per thread).
let failCurrent: ((err: unknown) => void) | undefined;
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  failCurrent?.(event.error);
});
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  failCurrent?.(event.reason);
});

/** Runs one call; the pool's default export. */
export default async function runInThread(call: ThreadCall): Promise<ThreadAnswer> {
  const handler = await loadExport(call.module, call.export);
  const escaped = new Promise<never>((_, reject) => failCurrent = reject);
  try {
    const taskId = call.taskId ?? "";
    const prefix = `[${taskId}] `;
    const context: TaskContext = {
      signal: NEVER,
      taskId,
      attempt: call.attempt ?? 1,
      log: {
        info: (message) => log.info(prefix + message),
        warn: (message) => log.warn(prefix + message),
        error: (message, cause) => log.error(prefix + message, cause),
      },
    };
    return { output: await Promise.race([handler(call.payload, context), escaped]) };
  } catch (err) {
    if (err instanceof ColmenaError) return { error: err.toWire() };
    throw err;
  } finally {
    failCurrent = undefined;
  }
}
