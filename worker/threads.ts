/**
 * A pool of threads for task handlers that must not run on the worker's event loop: CPU-bound code that
 * cannot watch its AbortSignal. The worker keeps answering (heartbeats, acks, other tasks) while such a
 * handler runs, and aborting a task (timeout, shutdown) that is running terminates its thread; the pool
 * starts another in its place.
 *
 * Threads come from Piscina (`node:worker_threads`, which Deno provides); they start on the first call and
 * stay until the pool is closed. Each thread loads `thread_entry.ts`, which loads the handler's module.
 *
 * Each thread's heap is capped (`resourceLimits`). A call that goes over the cap fails with
 * `MEMORY_EXCEEDED` when the runtime reports it; Deno 2.9 reports it only while a thread is starting, and
 * otherwise leaves the thread stalled, idle, at its cap: the call's timeout then ends the thread (`TIMEOUT`).
 * Either way the thread's memory stays bounded and the worker goes on.
 *
 * @module
 */
import { Piscina } from "piscina";
import { ColmenaError } from "../shared/errors.ts";
import type { ThreadAnswer, ThreadCall } from "./thread_entry.ts";

const ENTRY = new URL("./thread_entry.ts", import.meta.url).href;

/** Options of {@linkcode ThreadPool}. */
export interface ThreadPoolOptions {
  /** Most threads at once; calls beyond them wait their turn. Defaults to the number of CPU cores. */
  readonly maxThreads?: number;
  /**
   * Heap cap of each thread (its old generation), in MiB: a call that goes over it fails with
   * `MEMORY_EXCEEDED`, its thread ends and another takes its place. @defaultValue `512`
   */
  readonly memoryMb?: number;
}

/** Default heap cap of each thread, in MiB. */
export const DEFAULT_THREAD_MEMORY_MB = 512;

/** Threads that run exported functions by module and name; started on first use. */
export class ThreadPool implements AsyncDisposable {
  readonly #maxThreads: number;
  readonly #memoryMb: number;
  #pool: Piscina | undefined;
  #closed = false;

  constructor(options: ThreadPoolOptions = {}) {
    this.#maxThreads = Math.max(1, options.maxThreads ?? navigator.hardwareConcurrency ?? 1);
    this.#memoryMb = options.memoryMb ?? DEFAULT_THREAD_MEMORY_MB;
  }

  /** Most threads at once. */
  get maxThreads(): number {
    return this.#maxThreads;
  }

  /** Threads alive right now. */
  get threads(): number {
    return this.#pool?.threads.length ?? 0;
  }

  /**
   * Calls export `call.export` of `call.module` with `call.payload` in a thread. Rejects with `signal`'s reason once it aborts,
   * terminating the thread if the call had started; a typed error thrown by the handler keeps its code.
   */
  async run(call: ThreadCall, signal?: AbortSignal): Promise<unknown> {
    if (this.#closed) throw new ColmenaError("SHUTTING_DOWN");
    signal?.throwIfAborted();
    let answer: ThreadAnswer;
    try {
      answer = await this.#threads().run(call, signal === undefined ? {} : { signal });
    } catch (err) {
      // Piscina rejects with its own AbortError; the caller wants the reason it gave.
      if (signal?.aborted) throw signal.reason;
      if (_isOutOfMemory(err)) {
        throw new ColmenaError("MEMORY_EXCEEDED", {
          message: `La tarea superó el límite de memoria de su hilo (${this.#memoryMb} MiB)`,
          cause: err,
        });
      }
      throw err;
    }
    if ("error" in answer) throw ColmenaError.fromWire(answer.error);
    return answer.output;
  }

  /** Ends every thread; calls still running are rejected. */
  async close(): Promise<void> {
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #threads(): Piscina {
    // All threads stay up once started: Piscina 5.3 replaces a thread terminated by an abort only to keep
    // `minThreads`, and with fewer the calls waiting in its queue would wait for ever.
    this.#pool ??= new Piscina({
      filename: ENTRY,
      minThreads: this.#maxThreads,
      maxThreads: this.#maxThreads,
      resourceLimits: { maxOldGenerationSizeMb: this.#memoryMb },
    });
    return this.#pool;
  }
}

/** Whether a thread ended because its heap went over its cap. */
function _isOutOfMemory(err: unknown): boolean {
  return typeof err === "object" && err !== null &&
    (err as { code?: unknown }).code === "ERR_WORKER_OUT_OF_MEMORY";
}
