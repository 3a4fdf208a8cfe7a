/**
 * The `echo` handler of the chaos worker, as a module so that it can run in a thread: it throws on
 * {@linkcode POISON}, spins for ever without yielding on {@linkcode SPIN} (a CPU-bound handler that cannot be
 * aborted), and otherwise echoes.
 *
 * @module
 */

/** The `echo` message that makes the chaos worker's handler throw. */
export const POISON = { veneno: true } as const;

/** The `echo` message that makes the chaos worker's handler loop for ever, in a thread. */
export const SPIN = { girar: true } as const;

function flagged(payload: unknown, flag: string): boolean {
  if (typeof payload !== "object" || payload === null) return false;
  const message = (payload as { message?: unknown }).message;
  return typeof message === "object" && message !== null &&
    (message as Record<string, unknown>)[flag] === true;
}

/** Whether an `echo` payload carries {@linkcode POISON}. */
export function isPoison(payload: unknown): boolean {
  return flagged(payload, "veneno");
}

/** Whether an `echo` payload carries {@linkcode SPIN}. */
export function isSpin(payload: unknown): boolean {
  return flagged(payload, "girar");
}

/** The chaos `echo`. */
export function echo(payload: { message: unknown }): { message: unknown } {
  if (isPoison(payload)) throw new Error("Poisoned task: this handler always throws");
  if (isSpin(payload)) {
    // Never yields and never looks at a signal: only terminating its thread stops it.
    let rounds = 0;
    for (;;) rounds = (rounds + 1) % 1_000_000;
  }
  return { message: payload.message };
}
