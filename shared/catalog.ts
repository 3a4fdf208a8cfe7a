/**
 * The catalogue of task types a role knows: the built-in ones plus those loaded from the user's task
 * modules. The server validates every submit against it (bad input never reaches the queue), the worker
 * takes its handlers from it and the client its types, forms and output checks.
 *
 * @module
 */
import type { z } from "zod";
import { ColmenaError } from "./errors.ts";
import { type Decoded, describeIssues } from "./protocol.ts";
import { BUILTIN_TASKS } from "./tasks/builtin.ts";
import { type AnyTaskDefinition, TaskDefinitionError } from "./task_definition.ts";

const encoder = new TextEncoder();

/** A task whose payload has passed its type's schema and limits. */
export interface ValidTask {
  readonly type: string;
  /** The payload after validation (defaults applied). */
  readonly payload: unknown;
  readonly definition: AnyTaskDefinition;
}

/** What a submit carries besides type and payload: a file whose UTF-8 text fills a field. */
export interface FileSpec {
  readonly field: string;
}

/** An immutable set of task types by name. */
export class TaskCatalog {
  readonly #byName: ReadonlyMap<string, AnyTaskDefinition>;

  private constructor(definitions: readonly AnyTaskDefinition[]) {
    const byName = new Map<string, AnyTaskDefinition>();
    for (const definition of definitions) {
      if (byName.has(definition.name)) {
        const builtin = BUILTIN_TASKS.some((d) => d === byName.get(definition.name));
        throw new TaskDefinitionError(
          builtin
            ? `La tarea «${definition.name}» redefine una tarea incorporada`
            : `La tarea «${definition.name}» está definida dos veces`,
        );
      }
      byName.set(definition.name, definition);
    }
    this.#byName = byName;
  }

  /** The built-in task types only. */
  static builtin(): TaskCatalog {
    return new TaskCatalog(BUILTIN_TASKS);
  }

  /**
   * The built-in task types plus `extra`. Throws {@linkcode TaskDefinitionError} when a name repeats or
   * redefines a built-in one.
   */
  static withBuiltins(extra: readonly AnyTaskDefinition[]): TaskCatalog {
    return new TaskCatalog([...BUILTIN_TASKS, ...extra]);
  }

  /** A catalogue of exactly these definitions (a worker's `--solo` subset, a test's). */
  static of(definitions: readonly AnyTaskDefinition[]): TaskCatalog {
    return new TaskCatalog(definitions);
  }

  /** The definition of a task type, if known. */
  get(name: string): AnyTaskDefinition | undefined {
    return this.#byName.get(name);
  }

  /** Whether a task type is known. */
  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** Every task type's name, built-in ones first, in declaration order. */
  names(): string[] {
    return [...this.#byName.keys()];
  }

  /** Every definition, in the order of {@linkcode TaskCatalog.names}. */
  definitions(): AnyTaskDefinition[] {
    return [...this.#byName.values()];
  }

  /** Whether a definition is one of the built-in task types. */
  static isBuiltin(definition: AnyTaskDefinition): boolean {
    return (BUILTIN_TASKS as readonly AnyTaskDefinition[]).includes(definition);
  }

  /**
   * The definition of a task type that takes a file in `field` (when given): `UNKNOWN_TASK_TYPE`, or
   * `INVALID_PAYLOAD` for a file the type does not take there. Checks no payload.
   */
  accepts(type: string, field?: string): Decoded<AnyTaskDefinition> {
    const definition = this.#byName.get(type);
    if (definition === undefined) {
      return _fail("UNKNOWN_TASK_TYPE", `Tipo de tarea desconocido: "${type.slice(0, 64)}"`);
    }
    if (field !== undefined && definition.fileField !== field) {
      return _fail(
        "INVALID_PAYLOAD",
        definition.fileField === undefined
          ? `Las tareas "${type}" no aceptan ficheros`
          : `El fichero de una tarea "${type}" va en el campo "${definition.fileField}", no en "${
            field.slice(0, 64)
          }"`,
      );
    }
    return { ok: true, value: definition };
  }

  /**
   * Validates a task: `UNKNOWN_TASK_TYPE`, then `INVALID_PAYLOAD` for a payload its schema refuses, one
   * over the type's `maxPayloadBytes`, or a file for a type that takes none. With `file`, the payload's
   * `file.field` holds the file's text (or a stand-in when the text is not read) and `fileBytes` its size.
   */
  validate(
    task: { readonly type: string; readonly payload: unknown },
    file?: { readonly field: string; readonly bytes: number },
  ): Decoded<ValidTask> {
    const accepted = this.accepts(task.type, file?.field);
    if (!accepted.ok) return accepted;
    const definition = accepted.value;
    const parsed = (definition.input as z.ZodType).safeParse(task.payload);
    if (!parsed.success) {
      return {
        ok: false,
        id: null,
        error: new ColmenaError("INVALID_PAYLOAD", {
          message: `Datos no válidos para "${task.type}": ${describeIssues(parsed.error)}`,
          cause: parsed.error,
        }),
      };
    }
    const max = definition.limits.maxPayloadBytes;
    if (max !== undefined) {
      const bytes = encoder.encode(JSON.stringify(parsed.data)).length + (file?.bytes ?? 0);
      if (bytes > max) {
        return _fail(
          "INVALID_PAYLOAD",
          `Los datos de "${task.type}" ocupan ${bytes} bytes y el límite del tipo es ${max}`,
        );
      }
    }
    return { ok: true, value: { type: task.type, payload: parsed.data, definition } };
  }
}

function _fail(code: "UNKNOWN_TASK_TYPE" | "INVALID_PAYLOAD", message: string): Decoded<never> {
  return { ok: false, id: null, error: new ColmenaError(code, { message }) };
}

/** The catalogue of the built-in task types only. */
export const BUILTIN_CATALOG: TaskCatalog = TaskCatalog.builtin();
