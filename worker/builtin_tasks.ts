/**
 * Handlers of the built-in task types: text, numbers, echo, sleep and hash.
 *
 * @module
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ColmenaError } from "../shared/errors.ts";
import { echoTask, hashTask, numbersTask, sleepTask, textTask } from "../shared/tasks.ts";
import type { TaskRegistry } from "./registry.ts";

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** `text`: whitespace-separated word count, grapheme-wise reversal and upper case. */
export function processText(text: string): { words: number; reversed: string; upper: string } {
  const trimmed = text.trim();
  const words = trimmed === "" ? 0 : trimmed.split(/\s+/u).length;
  const clusters: string[] = [];
  for (const { segment } of graphemes.segment(text)) clusters.push(segment);
  return { words, reversed: clusters.reverse().join(""), upper: text.toUpperCase() };
}

/** `numbers`: count, sum, average, minimum and maximum; loops, so any length works. */
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

/** `hash` chains this long or shorter run on the worker's event loop; longer ones run in a thread. */
export const INLINE_HASH_ITERATIONS = 1_000;

export { iteratedSha256 } from "./isolated/hash.ts";

/**
 * Registers the built-in task types, the same way a user's task type is registered. `hash`, the CPU-bound
 * one, is isolated: long chains run in a thread, which a timeout terminates.
 */
export function registerBuiltinTasks(registry: TaskRegistry): TaskRegistry {
  return registry
    .register(textTask, ({ text }) => processText(text))
    .register(numbersTask, ({ numbers }) => analyzeNumbers(numbers))
    .register(echoTask, ({ message }) => ({ message }))
    .register(sleepTask, async ({ ms }, { signal }) => {
      const start = performance.now();
      await sleep(ms, undefined, { signal });
      return { sleptMs: Math.round(performance.now() - start) };
    })
    .registerIsolated(hashTask, {
      module: new URL("./isolated/hash.ts", import.meta.url),
      export: "hash",
      inlineWhen: ({ iterations }) => iterations <= INLINE_HASH_ITERATIONS,
    });
}
