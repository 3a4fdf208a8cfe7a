/**
 * The worker's registry of task handlers: each task definition paired with the function that runs it.
 *
 * Built-in tasks register here exactly as a user's own task types will.
 *
 * @module
 */
import type { z } from "zod";
import type { TaskDefinition } from "../shared/tasks.ts";

/** What a handler gets besides its payload. */
export interface TaskContext {
  /** Aborted when the attempt times out or the worker shuts down. */
  readonly signal: AbortSignal;
  /** The task's id. */
  readonly taskId: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
}

/** Runs one task: a validated payload in, an output (or a promise of it) out. */
export type TaskHandler<Def extends TaskDefinition> = (
  payload: z.output<Def["input"]>,
  context: TaskContext,
) => z.input<Def["output"]> | Promise<z.input<Def["output"]>>;

/** A registered task type. */
export interface Registration {
  readonly definition: TaskDefinition;
  readonly handler: (payload: unknown, context: TaskContext) => unknown;
}

/** The task types a worker can run. */
export class TaskRegistry {
  readonly #entries = new Map<string, Registration>();

  /** Registers a task type; registering a name twice is a programmer error. */
  register<Def extends TaskDefinition>(definition: Def, handler: TaskHandler<Def>): this {
    if (this.#entries.has(definition.name)) {
      throw new TypeError(`Cannot register task type "${definition.name}": already registered`);
    }
    this.#entries.set(definition.name, {
      definition,
      handler: handler as (payload: unknown, context: TaskContext) => unknown,
    });
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
}
