/**
 * The handler of the `hash` task type: a plain synchronous loop that never yields. Long chains run in a
 * thread of the worker's pool, stopped by terminating the thread.
 *
 * @module
 */
import { hashTask, iteratedSha256 } from "./hash.ts";

/** `{data, iterations}` → `{sha256}`. */
export default hashTask.implement(({ data, iterations }) => ({
  sha256: iteratedSha256(data, iterations),
}));
