/**
 * The one place that writes to the console: timestamped Spanish lines for people, buffered off the hot path.
 *
 * @module
 */
// This is the one module allowed to use the console (STYLE §9).
// deno-lint-ignore-file no-console
import { scrub } from "./redact.ts";

let buffered: string[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  if (buffered.length === 0) return;
  const text = buffered.join("\n");
  buffered = [];
  console.log(scrub(text));
}

/** Prints a line now. Start-up lines that tests and users wait for go through here. */
export function info(message: string): void {
  flush();
  console.log(scrub(message));
}

/**
 * Queues a line and prints it with the others of the same turn in one write, so that per-task lines cost
 * one write per batch rather than one per task.
 */
export function event(message: string): void {
  buffered.push(message);
  if (!scheduled) {
    scheduled = true;
    setTimeout(flush, 0);
  }
}

/** Prints a warning to stderr. */
export function warn(message: string): void {
  flush();
  console.error(scrub(`AVISO: ${message}`));
}

/** Prints an error and its cause chain to stderr: the message for people, the causes for operators. */
export function error(message: string, cause?: unknown): void {
  flush();
  const lines = [`ERROR: ${message}`];
  let current = cause;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    if (current instanceof Error) {
      lines.push(`  causa: ${current.name}: ${current.message}`);
      current = current.cause;
    } else {
      lines.push(`  causa: ${String(current)}`);
      current = undefined;
    }
  }
  console.error(scrub(lines.join("\n")));
}

/** Prints everything still buffered; call before exiting. */
export function flushLog(): void {
  flush();
}
