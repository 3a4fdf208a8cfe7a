/**
 * The worker's registry of task handlers: each task definition paired with the function that runs it.
 *
 * Built-in tasks register here exactly as a user's own task types will.
 *
 * @module
 */
import type { z } from "zod";
import type { AnyTaskDefinition, TaskContext } from "../shared/task_definition.ts";
import { loadExport } from "./exports.ts";
import { ThreadPool, type ThreadPoolOptions } from "./threads.ts";

export type { TaskContext };

/** Any definition the registry can hold. */
type TaskDefinition = AnyTaskDefinition;

/** Runs one task: a validated payload in, an output (or a promise of it) out. */
export type TaskHandler<Def extends TaskDefinition> = (
  payload: z.output<Def["input"]>,
  context: TaskContext,
) => z.input<Def["output"]> | Promise<z.input<Def["output"]>>;

/**
 * A handler that runs in a thread of its own: for CPU-bound code that cannot watch an AbortSignal. It is an
 * exported function of a module (a function cannot cross into a thread; a module can be loaded there). In a
 * thread its context's signal never aborts: the thread is ended instead.
 */
export interface IsolatedHandler<Def extends TaskDefinition> {
  /** The module that exports the handler, e.g. `new URL("./my_task.ts", import.meta.url)`. */
  readonly module: URL;
  /** The name of the export: `(payload) => output`, or a promise of it. */
  readonly export: string;
  /**
   * Payloads cheap enough to run on the worker's own event loop, sparing them the hop to a thread (the same
   * export, loaded in the worker). By default every call goes to a thread.
   */
  readonly inlineWhen?: (payload: z.output<Def["input"]>) => boolean;
}

/** A registered task type. */
export interface Registration {
  readonly definition: TaskDefinition;
  readonly handler: (payload: unknown, context: TaskContext) => unknown;
  /** Whether the handler runs in a thread (some payloads may still run inline). */
  readonly isolated: boolean;
}

/** Options of {@linkcode TaskRegistry}. */
export interface TaskRegistryOptions {
  /** The threads of isolated handlers. */
  readonly threads?: ThreadPoolOptions;
}

/**
 * The task types a worker can run. Dispose of it (or `close()` it) to end the threads of isolated handlers.
 */
export class TaskRegistry implements AsyncDisposable {
  readonly #entries = new Map<string, Registration>();
  readonly #threads: ThreadPool;

  constructor(options: TaskRegistryOptions = {}) {
    this.#threads = new ThreadPool(options.threads);
  }

  /** Registers a task type; registering a name twice is a programmer error. */
  register<Def extends TaskDefinition>(definition: Def, handler: TaskHandler<Def>): this {
    return this.#add(definition, handler as Registration["handler"], false);
  }

  /**
   * Registers a task type whose handler runs in a thread: the worker stays responsive however long it
   * computes, and a timeout or a shutdown terminates the thread instead of waiting for the handler.
   */
  registerIsolated<Def extends TaskDefinition>(
    definition: Def,
    isolated: IsolatedHandler<Def>,
  ): this {
    const threads = this.#threads;
    const { module, export: name, inlineWhen } = isolated;
    // Once loaded, an inline call is a plain call: a synchronous handler then ends in the runner's same turn.
    let inline: ((payload: unknown, context: TaskContext) => unknown) | undefined;
    // The runner checks the output against the definition's schema, as for any handler.
    return this.#add(
      definition,
      (payload, context) => {
        const { signal, taskId, attempt } = context;
        if (inlineWhen?.(payload as z.output<Def["input"]>) !== true) {
          return threads.run(
            { module: String(module), export: name, payload, taskId, attempt },
            signal,
          );
        }
        if (inline !== undefined) return inline(payload, context);
        return loadExport(module, name).then((fn) => (inline = fn)(payload, context));
      },
      true,
    );
  }

  #add(definition: TaskDefinition, handler: Registration["handler"], isolated: boolean): this {
    if (this.#entries.has(definition.name)) {
      throw new TypeError(`Cannot register task type "${definition.name}": already registered`);
    }
    this.#entries.set(definition.name, { definition, handler, isolated });
    return this;
  }

  /** The registration of a task type, if any. */
  get(name: string): Registration | undefined {
    return this.#entries.get(name);
  }

  /** The names of every registered task type. */
  names(): string[] {
    return [...this.#entries.keys()];
  }

  /** Most threads the isolated handlers use at once. */
  get maxThreads(): number {
    return this.#threads.maxThreads;
  }

  /** Ends the threads of isolated handlers; calls still running in them are rejected. */
  async close(): Promise<void> {
    await this.#threads.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
