/**
 * Handlers of the built-in task types: text, numbers, echo, sleep and hash.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { setImmediate } from "node:timers";
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

const HASH_SLICE = 20_000;

/**
 * `hash`: SHA-256 of the UTF-8 data, then again over each previous raw digest; lowercase hex.
 *
 * Long chains yield to the event loop every 20,000 rounds, so the worker stays responsive and an abort
 * (timeout, shutdown) takes effect.
 */
export async function iteratedSha256(
  data: string,
  iterations: number,
  signal?: AbortSignal,
): Promise<string> {
  let digest = createHash("sha256").update(data, "utf8").digest();
  for (let done = 1; done < iterations;) {
    const until = Math.min(iterations, done + HASH_SLICE);
    for (; done < until; done++) digest = createHash("sha256").update(digest).digest();
    if (done < iterations) {
      await new Promise((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
    }
  }
  return digest.toString("hex");
}

/** Registers the built-in task types, the same way a user's task type is registered. */
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
    .register(hashTask, async ({ data, iterations }, { signal }) => ({
      sha256: await iteratedSha256(data, iterations, signal),
    }));
}
