/**
 * How a task type is declared: {@linkcode defineTask} gives its contract (name, schemas, timeout, limits)
 * and names the module of its handler, and {@linkcode TaskDefinition.implement} types that handler.
 *
 * The contract and the handler live in two modules so that the server and the client, which import the
 * contract, never load handler code (nor what the handler imports): only a worker imports the module the
 * contract names in `handler`. Built-in task types are declared exactly like a user's own.
 *
 * @module
 */
import { z } from "zod";

/** What parsing a person's input gives: the value, or a Spanish message saying what is wrong. */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly message: string };

/** A source of random numbers in `[0, 1)`, like `Math.random`. */
export type Random = () => number;

/** Task type names: a letter, then letters, digits, `_` or `-`; at most 64 characters. */
export const TASK_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/** Names no task type may take: they name queues of the broker topology. */
export const RESERVED_TASK_NAMES: readonly string[] = ["dlq"];

/** A logger for one attempt of one task: each line names the task. */
export interface TaskLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string, cause?: unknown): void;
}

/** What a handler gets besides its payload. */
export interface TaskContext {
  /**
   * Aborted when the attempt times out, is cancelled or the worker shuts down. A handler that runs isolated
   * in a thread is stopped by ending its thread instead, and its signal never aborts.
   */
  readonly signal: AbortSignal;
  /** The task's id. */
  readonly taskId: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** Lines for the worker's log, prefixed with the task's type and id. */
  readonly log: TaskLogger;
}

/** Limits of one task type, checked besides its schemas. */
export interface TaskLimits {
  /**
   * Largest payload, in bytes of its JSON (with a file, the file's bytes count too). The server refuses a
   * larger submit with `INVALID_PAYLOAD` before anything is queued.
   */
  readonly maxPayloadBytes?: number;
  /** Largest output, in bytes of its JSON. A larger output fails the attempt with `TASK_FAILED`. */
  readonly maxOutputBytes?: number;
}

/** Where a task type's handler lives: a module, and the name of its export. */
export interface HandlerRef {
  /** The module, e.g. `new URL("./resumen_handler.ts", import.meta.url)`. */
  readonly module: URL;
  /** The export's name. @defaultValue `"default"` */
  readonly export?: string;
}

/** How the command line and the simulator use a task type; every field is optional. */
export interface TaskCli<In, Out> {
  /** Spanish name shown by the command line and the menu (`texto` for `text`). @defaultValue the name */
  readonly label?: string;
  /** More names the command line accepts, lower case and without accents (`numeros`). */
  readonly aliases?: readonly string[];
  /** How `enviar <tipo> <args…>` is written, e.g. `"<texto>"`; without it the type takes `--datos`. */
  readonly usage?: string;
  /**
   * Builds the payload from the words after the type name. With `file`, from the words after the file, and
   * without the field the file fills.
   */
  readonly parse?: (
    args: readonly string[],
    options: { readonly file: boolean },
  ) => Parsed<Partial<In>>;
  /** Labelled Spanish lines of an output, for people. @defaultValue its JSON */
  readonly format?: (output: Out) => string[];
  /** A varied, small payload, for `simular`. */
  readonly sample?: (random: Random) => In;
  /** The one small payload `deno task bench` sends for this type, the same for colmena and its baselines. */
  readonly bench?: In;
  /** Checks an output against its payload; a Spanish description of the first mismatch, if any. */
  readonly verify?: (payload: In, output: Out) => string | undefined;
}

/** What {@linkcode defineTask} takes. */
export interface TaskSpec<Name extends string, In extends z.ZodType, Out extends z.ZodType> {
  /** The wire name (`task.type`); see {@linkcode TASK_NAME}. */
  readonly name: Name;
  /** A one-line Spanish description, for menus and `tipos`. */
  readonly description: string;
  /** Schema of the payload a client sends; the server checks every submit against it. */
  readonly input: In;
  /** Schema of the output the handler returns; the worker and the client check it. */
  readonly output: Out;
  /** How long one attempt may run unless the submit says otherwise, in milliseconds. */
  readonly timeoutMs: number;
  /** Size limits besides the schemas. */
  readonly limits?: TaskLimits;
  /**
   * The module whose export is the handler (made with {@linkcode TaskDefinition.implement}); a URL means its
   * default export. Only workers import it.
   */
  readonly handler: URL | HandlerRef;
  /**
   * Run the handler in a thread of its own: for CPU-bound code that does not watch its signal, so the
   * worker stays responsive and a timeout ends the thread. `inlineWhen` picks payloads cheap enough to run
   * on the worker's own event loop.
   * @defaultValue `false`
   */
  readonly isolated?: boolean | { readonly inlineWhen: (payload: z.output<In>) => boolean };
  /**
   * The string field of the payload that a file can fill (`--archivo`): its UTF-8 text becomes that field.
   * Without it the type takes no file.
   */
  readonly fileField?: string;
  /** Command line and simulator support. */
  readonly cli?: TaskCli<z.input<In>, z.output<Out>>;
}

/** A task type's handler: a validated payload in, an output (or a promise of it) out. */
export type TaskHandler<In extends z.ZodType, Out extends z.ZodType> = (
  payload: z.output<In>,
  context: TaskContext,
) => z.input<Out> | Promise<z.input<Out>>;

/** A declared task type: its contract, and {@linkcode TaskDefinition.implement} for its handler module. */
export interface TaskDefinition<
  Name extends string = string,
  In extends z.ZodType = z.ZodType,
  Out extends z.ZodType = z.ZodType,
> extends Omit<TaskSpec<Name, In, Out>, "handler" | "limits" | "isolated"> {
  /** Where the handler lives. */
  readonly handler: Required<HandlerRef>;
  /** Size limits besides the schemas (empty when none). */
  readonly limits: TaskLimits;
  /** Whether the handler runs in a thread, and which payloads still run inline. */
  readonly isolated: false | { readonly inlineWhen?: (payload: z.output<In>) => boolean };
  /** Types a handler for this task type; returns it unchanged, for the handler module to export. */
  implement(handler: TaskHandler<In, Out>): TaskHandler<In, Out>;
}

/** Any task definition, whatever its name and schemas. */
// deno-lint-ignore no-explicit-any
export type AnyTaskDefinition = TaskDefinition<string, any, any>;

/** Why a declaration is not a usable task type: a Spanish sentence. */
export class TaskDefinitionError extends Error {
  override readonly name = "TaskDefinitionError";
}

/**
 * Declares a task type. Throws {@linkcode TaskDefinitionError} (Spanish message) when the name, schemas,
 * timeout, limits or handler reference are not usable.
 *
 * @example
 * ```ts
 * export const resumen = defineTask({
 *   name: "resumen",
 *   description: "Cuenta las frases de un texto",
 *   input: z.object({ texto: z.string() }),
 *   output: z.object({ frases: z.number().int() }),
 *   timeoutMs: 5_000,
 *   handler: new URL("./resumen_handler.ts", import.meta.url),
 * });
 * ```
 */
export function defineTask<Name extends string, In extends z.ZodType, Out extends z.ZodType>(
  spec: TaskSpec<Name, In, Out>,
): TaskDefinition<Name, In, Out> {
  _check(spec);
  const handler = spec.handler instanceof URL
    ? { module: spec.handler, export: "default" }
    : { module: spec.handler.module, export: spec.handler.export ?? "default" };
  const isolated = spec.isolated === undefined || spec.isolated === false
    ? false as const
    : spec.isolated === true
    ? {}
    : { inlineWhen: spec.isolated.inlineWhen };
  return Object.freeze({
    ...spec,
    handler: Object.freeze(handler),
    limits: Object.freeze({ ...spec.limits }),
    isolated: Object.freeze(isolated),
    implement: (fn: TaskHandler<In, Out>) => fn,
  });
}

function _check(spec: TaskSpec<string, z.ZodType, z.ZodType>): void {
  const what = typeof spec?.name === "string"
    ? `La tarea «${spec.name.slice(0, 64)}»`
    : "Una tarea";
  const fail = (problem: string): never => {
    throw new TaskDefinitionError(`${what} ${problem}`);
  };
  if (typeof spec !== "object" || spec === null) fail("no es un objeto");
  if (typeof spec.name !== "string" || !TASK_NAME.test(spec.name)) {
    fail("tiene un nombre no válido: use una letra y luego letras, dígitos, _ o - (hasta 64)");
  }
  if (RESERVED_TASK_NAMES.includes(spec.name)) fail("usa un nombre reservado");
  if (typeof spec.description !== "string" || spec.description.trim() === "") {
    fail("no tiene descripción");
  }
  if (!(spec.input instanceof z.ZodType) || !(spec.output instanceof z.ZodType)) {
    fail("no tiene esquemas de zod en input y output (importe z del mod.ts de colmena)");
  }
  if (!Number.isSafeInteger(spec.timeoutMs) || spec.timeoutMs < 1 || spec.timeoutMs > 3_600_000) {
    fail("necesita timeoutMs, un entero de milisegundos entre 1 y 3600000");
  }
  for (const key of ["maxPayloadBytes", "maxOutputBytes"] as const) {
    const value = spec.limits?.[key];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
      fail(`tiene un límite ${key} que no es un entero positivo`);
    }
  }
  const module = spec.handler instanceof URL ? spec.handler : spec.handler?.module;
  if (!(module instanceof URL)) {
    fail('necesita handler: new URL("./modulo_del_handler.ts", import.meta.url)');
  }
  if (spec.fileField !== undefined && typeof spec.fileField !== "string") {
    fail("tiene un fileField que no es el nombre de un campo");
  }
}

/** Whether a value is a task definition made by {@linkcode defineTask}. */
export function isTaskDefinition(value: unknown): value is AnyTaskDefinition {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as Partial<AnyTaskDefinition>;
  return typeof candidate.name === "string" && typeof candidate.implement === "function" &&
    candidate.input instanceof z.ZodType && candidate.output instanceof z.ZodType &&
    typeof candidate.handler === "object";
}

/** The names of a catalogue's task types. */
export type TaskName<C extends readonly AnyTaskDefinition[]> = C[number]["name"];

/** The definition named `N` in catalogue `C`. */
export type DefinitionOf<C extends readonly AnyTaskDefinition[], N extends string> = Extract<
  C[number],
  { readonly name: N }
>;

/** What a client passes as payload of task type `N` of catalogue `C` (defaults not yet applied). */
export type InputOf<C extends readonly AnyTaskDefinition[], N extends string> = z.input<
  DefinitionOf<C, N>["input"]
>;

/** What task type `N` of catalogue `C` returns. */
export type OutputOf<C extends readonly AnyTaskDefinition[], N extends string> = z.output<
  DefinitionOf<C, N>["output"]
>;
