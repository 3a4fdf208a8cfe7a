/**
 * The task catalogue: each task type's name, input schema and output schema.
 *
 * All three roles read it: the client for its types, the server to validate a payload before it is enqueued
 * (bad input never reaches the queue) and the worker to type its handlers. Built-in tasks are declared with
 * {@linkcode defineTask}, the same call a user's own task type will use.
 *
 * @module
 */
import { z } from "zod";

/** The declaration of one task type. */
export interface TaskDefinition<
  Name extends string = string,
  In extends z.ZodType = z.ZodType,
  Out extends z.ZodType = z.ZodType,
> {
  /** The wire name of the task type (`task.type`). */
  readonly name: Name;
  /** A one-line Spanish description, for menus and `welcome`. */
  readonly description: string;
  /** Schema of the payload a client sends. */
  readonly input: In;
  /** Schema of the output a worker returns. */
  readonly output: Out;
  /** How long one attempt may run before it is aborted, unless the submit says otherwise. */
  readonly defaultTimeoutMs: number;
}

/** Declares a task type; the returned object is the definition itself, typed precisely. */
export function defineTask<Name extends string, In extends z.ZodType, Out extends z.ZodType>(
  definition: TaskDefinition<Name, In, Out>,
): TaskDefinition<Name, In, Out> {
  return Object.freeze(definition);
}

/** `text`: word count, text reversed by grapheme clusters, and upper case. */
export const textTask = defineTask({
  name: "text",
  description: "Procesar texto (palabras, invertido, mayúsculas)",
  input: z.object({ text: z.string() }),
  output: z.object({
    words: z.number().int().nonnegative(),
    reversed: z.string(),
    upper: z.string(),
  }),
  defaultTimeoutMs: 30_000,
});

/** `numbers`: count, sum, average, minimum and maximum of one or more finite numbers. */
export const numbersTask = defineTask({
  name: "numbers",
  description: "Analizar números (suma, media, mínimo, máximo)",
  input: z.object({ numbers: z.array(z.number()).min(1) }),
  output: z.object({
    count: z.number().int().positive(),
    sum: z.number(),
    avg: z.number(),
    min: z.number(),
    max: z.number(),
  }),
  defaultTimeoutMs: 30_000,
});

/** `echo`: returns the message it was given, any JSON value. */
export const echoTask = defineTask({
  name: "echo",
  description: "Eco (devuelve el mensaje)",
  input: z.object({ message: z.json() }),
  output: z.object({ message: z.json() }),
  defaultTimeoutMs: 10_000,
});

/** Longest `sleep` a client may ask for, in milliseconds. */
export const MAX_SLEEP_MS = 60_000;

/** `sleep`: waits the given milliseconds (0–60000). */
export const sleepTask = defineTask({
  name: "sleep",
  description: "Esperar (milisegundos)",
  input: z.object({ ms: z.number().int().min(0).max(MAX_SLEEP_MS) }),
  output: z.object({ sleptMs: z.number().int().nonnegative() }),
  defaultTimeoutMs: MAX_SLEEP_MS + 10_000,
});

/** Most SHA-256 iterations a `hash` task may ask for. */
export const MAX_HASH_ITERATIONS = 1_000_000;

/** `hash`: SHA-256 of the UTF-8 data, iterated over the raw digest; lowercase hex. */
export const hashTask = defineTask({
  name: "hash",
  description: "Hash SHA-256 (con iteraciones)",
  input: z.object({
    data: z.string(),
    iterations: z.number().int().min(1).max(MAX_HASH_ITERATIONS).default(1),
  }),
  output: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  defaultTimeoutMs: 60_000,
});

/** The built-in catalogue, by task type name. */
export const TASKS = {
  text: textTask,
  numbers: numbersTask,
  echo: echoTask,
  sleep: sleepTask,
  hash: hashTask,
} as const;

/** The name of a built-in task type. */
export type TaskType = keyof typeof TASKS;

/** The names of the built-in task types, in catalogue order. */
export const TASK_TYPES = Object.keys(TASKS) as TaskType[];

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
