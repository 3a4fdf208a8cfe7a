/**
 * Handlers for the tests of `worker/threads.ts`, loaded in the pool's threads.
 *
 * @module
 */
import { isMainThread } from "node:worker_threads";
import { ColmenaError } from "../../shared/errors.ts";

/** Doubles a number; says whether it ran on the main thread. */
export function double(n: number): { doubled: number; mainThread: boolean } {
  return { doubled: 2 * n, mainThread: isMainThread };
}

/** Loops for ever, never yielding. */
export function spin(): never {
  let rounds = 0;
  for (;;) rounds = (rounds + 1) % 1_000_000;
}

/** Throws a typed error. */
export function refuse(): never {
  throw new ColmenaError("INVALID_PAYLOAD", { message: "No me gusta este número" });
}

/** Throws an untyped error. */
export async function crash(): Promise<never> {
  await Promise.resolve();
  throw new RangeError("boom");
}

/** Not a function. */
export const notAFunction = 42;

/** Throws from a timer, outside the call, and never settles. */
export function escape(): Promise<never> {
  setTimeout(() => {
    throw new Error("se escapó");
  }, 10);
  return new Promise<never>(() => {});
}
