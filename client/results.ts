/**
 * `TaskResults`: the results of tasks as the server pushes them, and the callers waiting for them.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import type { ResultPush } from "../shared/protocol.ts";
import type { TaskCatalog } from "../shared/catalog.ts";
import { describeIssues } from "../shared/protocol.ts";

/**
 * The end of a task of type `Name`: its output (typed `Out` by the client's catalogue, checked against the
 * type's output schema on arrival), or the error it failed with.
 */
export type TaskResult<Name extends string = string, Out = unknown> =
  & {
    readonly taskId: string;
    readonly taskType: Name;
    readonly worker: string;
    readonly durationMs: number;
    /** The attempt that produced it. */
    readonly attempts?: number;
    /** Where a large output was stored; `result()` has already downloaded it into `output`. */
    readonly outputRef?: string;
  }
  & (
    | { readonly status: "succeeded"; readonly output: Out }
    | { readonly status: "failed" | "cancelled"; readonly error: ColmenaError }
  );

/** Options of {@linkcode TaskResults}: how to reach the server for what was not pushed here. */
export interface TaskResultsOptions {
  /** Has the server push the results of these tasks; resolves with the ids no task has. */
  readonly watch: (taskIds: readonly string[]) => Promise<{ missing: string[] }>;
  /** Fetches a large output stored by reference, decoded. */
  readonly fetchOutput: (ref: string) => Promise<unknown>;
  /** The task types whose outputs are checked on arrival; other types' outputs pass as they come. */
  readonly catalog?: TaskCatalog;
}

/** A result as it came: the frame, and the {@linkcode TaskResult} made of it once. */
interface Arrival {
  readonly frame: ResultPush;
  readonly result: TaskResult;
}

interface Waiter {
  readonly resolve: (arrival: Arrival) => void;
  readonly reject: (err: ColmenaError) => void;
}

/** Results (and announced task ids) kept for tasks nobody has asked about yet, at most. */
const MAX_UNCLAIMED_RESULTS = 100_000;

/**
 * Where pushed results meet whoever waits for them. A result nobody waits for yet is kept (the newest
 * {@linkcode MAX_UNCLAIMED_RESULTS}) for a later `result()`; each task's result is announced to the
 * listeners once, however often the server pushes it.
 */
export class TaskResults {
  readonly #options: TaskResultsOptions;
  readonly #waiters = new Map<string, Waiter>();
  readonly #unclaimed = new Map<string, Arrival>();
  /** Tasks accepted on this client whose result has not come yet: watched again after a reconnect. */
  readonly #outstanding = new Set<string>();
  /** Tasks whose result the listeners have seen (the latest ones): a repeat is not announced again. */
  readonly #announced = new Set<string>();
  readonly #listeners = new Set<(result: TaskResult) => void>();
  #closed = false;

  constructor(options: TaskResultsOptions) {
    this.#options = options;
  }

  /** Notes a task accepted on this client: its result will be pushed here. */
  accepted(taskId: string): void {
    this.#outstanding.add(taskId);
  }

  /** Takes a pushed result: announces it, and resolves whoever waits for it or keeps it for later. */
  receive(frame: ResultPush): void {
    this.#outstanding.delete(frame.taskId);
    const arrival = { frame, result: toTaskResult(frame, this.#options.catalog) };
    // A result that came before (a reconnect's watch, a later `result()` asking again) resolves whoever
    // waits now, but is announced to the listeners once.
    const repeated = this.#announced.has(frame.taskId);
    if (!repeated) {
      this.#announced.add(frame.taskId);
      if (this.#announced.size > MAX_UNCLAIMED_RESULTS) {
        const oldest = this.#announced.values().next().value;
        if (oldest !== undefined) this.#announced.delete(oldest);
      }
      for (const listener of this.#listeners) listener(arrival.result);
    }
    const waiter = this.#waiters.get(frame.taskId);
    if (waiter !== undefined) {
      this.#waiters.delete(frame.taskId);
      waiter.resolve(arrival);
    } else if (!repeated) {
      this.#unclaimed.set(frame.taskId, arrival);
      if (this.#unclaimed.size > MAX_UNCLAIMED_RESULTS) {
        const oldest = this.#unclaimed.keys().next().value;
        if (oldest !== undefined) this.#unclaimed.delete(oldest);
      }
    }
  }

  /**
   * Waits for the result of a task, with a large output already fetched into `output`. A task whose
   * result is not on its way here is watched; `NOT_FOUND` if the server knows no such task.
   */
  async result(taskId: string): Promise<TaskResult> {
    const { frame, result } = await this.#arrival(taskId);
    if (frame.status !== "succeeded" || frame.outputRef === undefined) return result;
    const output = await this.#options.fetchOutput(frame.outputRef);
    return toTaskResult({ ...frame, output }, this.#options.catalog);
  }

  /** Calls `listener` with each task's result once; returns a function that unsubscribes. */
  onResult(listener: (result: TaskResult) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The tasks whose result is awaited here: what to watch again after a reconnect. */
  awaited(): string[] {
    return [...new Set([...this.#waiters.keys(), ...this.#outstanding])];
  }

  /** Watches `taskIds` again (after a reconnect); those the server does not know reject with `NOT_FOUND`. */
  async rewatch(taskIds: readonly string[]): Promise<void> {
    if (taskIds.length === 0) return;
    const { missing } = await this.#options.watch(taskIds);
    for (const taskId of missing) {
      this.#outstanding.delete(taskId);
      this.#notFound(taskId);
    }
  }

  /** Rejects every waiter, and any later one with nothing kept, with `reason`. */
  close(reason: ColmenaError): void {
    this.#closed = true;
    for (const waiter of this.#waiters.values()) waiter.reject(reason);
    this.#waiters.clear();
  }

  #arrival(taskId: string): Promise<Arrival> {
    const done = this.#unclaimed.get(taskId);
    if (done !== undefined) {
      this.#unclaimed.delete(taskId);
      return Promise.resolve(done);
    }
    if (this.#closed) return Promise.reject(new ColmenaError("CONNECTION_CLOSED"));
    const { promise, resolve, reject } = Promise.withResolvers<Arrival>();
    // A second caller waiting for the same task shares the result with the first.
    const earlier = this.#waiters.get(taskId);
    this.#waiters.set(taskId, {
      resolve: (arrival) => {
        earlier?.resolve(arrival);
        resolve(arrival);
      },
      reject: (err) => {
        earlier?.reject(err);
        reject(err);
      },
    });
    if (earlier === undefined && !this.#outstanding.has(taskId)) {
      // Nothing is on its way here for this task (an earlier call took its result, or it was submitted
      // elsewhere): ask the server, which pushes the result at once if the task has ended.
      this.#options.watch([taskId]).then(({ missing }) => {
        if (missing.includes(taskId)) this.#notFound(taskId);
      }, () => {
        // The connection closed: its shutdown or reconnect deals with the waiter.
      });
    }
    return promise;
  }

  #notFound(taskId: string): void {
    this.#waiters.get(taskId)?.reject(new ColmenaError("NOT_FOUND"));
    this.#waiters.delete(taskId);
  }
}

/**
 * Turns a `result` frame into a {@linkcode TaskResult}: every result a caller or listener sees is made
 * here, once as it arrives and again once a large output (`outputRef`) has been fetched into `output`.
 * A failed or cancelled task gets its error rebuilt as a {@linkcode ColmenaError}.
 */
export function toTaskResult(frame: ResultPush, catalog?: TaskCatalog): TaskResult {
  const base = {
    taskId: frame.taskId,
    taskType: frame.taskType,
    worker: frame.worker,
    durationMs: frame.durationMs,
    ...(frame.attempts === undefined ? {} : { attempts: frame.attempts }),
    ...(frame.outputRef === undefined ? {} : { outputRef: frame.outputRef }),
  };
  const definition = catalog?.get(frame.taskType);
  // An output stored by reference is checked once downloaded (`frame.output` is then there).
  if (
    frame.status === "succeeded" && definition !== undefined &&
    !(frame.outputRef !== undefined && frame.output === undefined)
  ) {
    const parsed = definition.output.safeParse(frame.output);
    if (!parsed.success) {
      const error = new ColmenaError("TASK_FAILED", {
        message: `La salida de "${frame.taskType}" no cumple el esquema de este cliente: ${
          describeIssues(parsed.error)
        }`,
        cause: parsed.error,
      });
      return { ...base, status: "failed", error };
    }
    return { ...base, status: "succeeded", output: parsed.data };
  }
  if (frame.status === "succeeded") return { ...base, status: "succeeded", output: frame.output };
  const error = frame.error === undefined
    ? new ColmenaError(frame.status === "cancelled" ? "CANCELLED" : "TASK_FAILED")
    : ColmenaError.fromWire(frame.error);
  return { ...base, status: frame.status, error };
}
