/**
 * The tasks the benchmark sends: each task type's `cli.bench` payload (declared in its task module),
 * cycled through in order.
 *
 * colmena and the raw baseline send the same JSON task specs, so both move messages of the same size.
 *
 * @module
 */
import { BUILTIN_CATALOG } from "../shared/catalog.ts";

/** The small payload of each task type that declares one. */
const PAYLOADS: ReadonlyMap<string, unknown> = new Map(
  BUILTIN_CATALOG.definitions().flatMap((d) =>
    d.cli?.bench === undefined ? [] : [[d.name, d.cli.bench] as const]
  ),
);

/** The task types the benchmark knows payloads for. */
export const BENCH_TASK_TYPES: readonly string[] = [...PAYLOADS.keys()];

/** The default mix: cheap task types whose cost is dominated by the trip, not the work. */
export const DEFAULT_TASK_MIX: readonly string[] = ["text", "numbers", "echo", "hash"];

/** The task specs of a mix, each already encoded as `{"type":…,"payload":…}`. */
export function encodeTaskMix(types: readonly string[]): string[] {
  return types.map((type) => {
    if (!PAYLOADS.has(type)) {
      throw new RangeError(`Cannot build task mix: unknown task type "${type}"`);
    }
    return JSON.stringify({ type, payload: PAYLOADS.get(type) });
  });
}
