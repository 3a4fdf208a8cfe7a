/**
 * The built-in task types by name, and the types derived from them. Each built-in type is declared in its
 * own module under `shared/tasks/`, with {@linkcode defineTask}, exactly as a user's own task type is; a
 * role's full catalogue (built-in plus loaded) is a {@linkcode TaskCatalog} (`shared/catalog.ts`).
 *
 * @module
 */
import type { z } from "zod";
import { BUILTIN_TASKS, type BuiltinTasks } from "./tasks/builtin.ts";

export { defineTask, type TaskDefinition } from "./task_definition.ts";
export { MAX_SLEEP_MS } from "./tasks/sleep.ts";
export { MAX_HASH_ITERATIONS } from "./tasks/hash.ts";
export { echoTask, hashTask, numbersTask, sleepTask, textTask } from "./tasks/builtin.ts";

/** The built-in catalogue, by task type name. */
export const TASKS: { readonly [D in BuiltinTasks[number] as D["name"]]: D } = Object.freeze(
  Object.fromEntries(BUILTIN_TASKS.map((d) => [d.name, d])),
) as { readonly [D in BuiltinTasks[number] as D["name"]]: D };

/** The name of a built-in task type. */
export type TaskType = keyof typeof TASKS;

/** The names of the built-in task types, in catalogue order. */
export const TASK_TYPES: TaskType[] = BUILTIN_TASKS.map((d) => d.name);

/** What a client passes as payload of task type `T` (defaults not yet applied). */
export type TaskInput<T extends TaskType> = z.input<(typeof TASKS)[T]["input"]>;

/** The payload of task type `T` after validation (defaults applied), as a handler receives it. */
export type TaskPayload<T extends TaskType> = z.output<(typeof TASKS)[T]["input"]>;

/** What task type `T` returns. */
export type TaskOutput<T extends TaskType> = z.output<(typeof TASKS)[T]["output"]>;

/** Whether a string names a built-in task type. */
export function isTaskType(name: string): name is TaskType {
  return Object.hasOwn(TASKS, name);
}
