/**
 * The `hash` task's computation, run in a thread of the worker's pool (see `worker/threads.ts`): a plain
 * synchronous loop that never yields, stopped by terminating its thread.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** SHA-256 of the UTF-8 data, then again over each previous raw 32-byte digest; lowercase hex. */
export function iteratedSha256(data: string, iterations: number): string {
  let digest = createHash("sha256").update(data, "utf8").digest();
  for (let done = 1; done < iterations; done++) {
    digest = createHash("sha256").update(digest).digest();
  }
  return digest.toString("hex");
}

/** The `hash` handler: `{data, iterations}` → `{sha256}`. */
export function hash({ data, iterations }: { data: string; iterations: number }): {
  sha256: string;
} {
  return { sha256: iteratedSha256(data, iterations) };
}
