/**
 * The simulated workload: varied tasks of each type (the type's `cli.sample`), and the check that each
 * output matches its input (its output schema, then the type's `cli.verify`).
 *
 * @module
 */
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import type { Random } from "../shared/task_definition.ts";
import type { AnyTaskRequest } from "./args.ts";

export type { Random };
export { iteratedSha256 } from "../shared/tasks/hash.ts";

/** Words as the `text` task counts them: runs of non-whitespace. */
export function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed === "" ? 0 : trimmed.split(/\s+/u).length;
}

/** The task types of a catalogue that the simulator can make payloads for (they have `cli.sample`). */
export function simulatedTypes(catalog: TaskCatalog = BUILTIN_CATALOG): string[] {
  return catalog.definitions().filter((d) => d.cli?.sample !== undefined).map((d) => d.name);
}

/** A task of the given type with a varied, small payload; `RangeError` when the type has no sample. */
export function makeTask(
  type: string,
  random: Random = Math.random,
  catalog: TaskCatalog = BUILTIN_CATALOG,
): AnyTaskRequest {
  const sample = catalog.get(type)?.cli?.sample;
  if (sample === undefined) {
    throw new RangeError(`Cannot simulate task type "${type}": it has no sample payloads`);
  }
  return { type, payload: sample(random) };
}

const BAD_SHAPE = "la salida no tiene la forma de su tipo de tarea";

/** Checks an output against the task that produced it; returns a Spanish description of the first mismatch. */
export function verifyOutput(
  request: AnyTaskRequest,
  output: unknown,
  catalog: TaskCatalog = BUILTIN_CATALOG,
): string | undefined {
  const definition = catalog.get(request.type);
  if (definition === undefined) return `tipo de tarea desconocido: ${request.type}`;
  const parsed = definition.output.safeParse(output);
  if (!parsed.success) return BAD_SHAPE;
  return definition.cli?.verify?.(request.payload, parsed.data);
}
