/**
 * The handler of the `numbers` task type.
 *
 * @module
 */
import { ColmenaError } from "../errors.ts";
import { numbersTask } from "./numbers.ts";

/** Count, sum, average, minimum and maximum; loops, so any length works. */
export function analyzeNumbers(
  numbers: readonly number[],
): { count: number; sum: number; avg: number; min: number; max: number } {
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const n of numbers) {
    sum += n;
    if (n < min) min = n;
    if (n > max) max = n;
  }
  if (!Number.isFinite(sum)) {
    throw new ColmenaError("INVALID_PAYLOAD", {
      message: "La suma de los números desborda el rango de coma flotante (IEEE 754 de 64 bits)",
    });
  }
  return { count: numbers.length, sum, avg: sum / numbers.length, min, max };
}

/** `{numbers}` → `{count, sum, avg, min, max}`. */
export default numbersTask.implement(({ numbers }) => analyzeNumbers(numbers));
