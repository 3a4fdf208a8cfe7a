/**
 * The tasks the benchmark sends: one small payload per task type, cycled through in order.
 *
 * colmena and the raw baseline send the same JSON task specs, so both move messages of the same size.
 *
 * @module
 */

/** A small payload for each task type the benchmark can send. */
const PAYLOADS: Readonly<Record<string, unknown>> = {
  text: { text: "La colmena reparte tareas entre sus obreras sin perder ninguna" },
  numbers: { numbers: [3, 1, 4, 1, 5, 9, 2, 6, 5, 3] },
  echo: { message: { saludo: "hola", n: 42, lista: [1, 2, 3] } },
  hash: { data: "colmena", iterations: 1 },
  sleep: { ms: 0 },
};

/** The task types the benchmark knows payloads for. */
export const BENCH_TASK_TYPES: readonly string[] = Object.keys(PAYLOADS);

/** The default mix: cheap task types whose cost is dominated by the trip, not the work. */
export const DEFAULT_TASK_MIX: readonly string[] = ["text", "numbers", "echo", "hash"];

/** The task specs of a mix, each already encoded as `{"type":…,"payload":…}`. */
export function encodeTaskMix(types: readonly string[]): string[] {
  return types.map((type) => {
    if (!Object.hasOwn(PAYLOADS, type)) {
      throw new RangeError(`Cannot build task mix: unknown task type "${type}"`);
    }
    return JSON.stringify({ type, payload: PAYLOADS[type] });
  });
}
