/**
 * The handler of the `sleep` task type.
 *
 * @module
 */
import { setTimeout as sleep } from "node:timers/promises";
import { sleepTask } from "./sleep.ts";

/** `{ms}` → `{sleptMs}`; stops early when its signal aborts. */
export default sleepTask.implement(async ({ ms }, { signal }) => {
  const start = performance.now();
  await sleep(ms, undefined, { signal });
  return { sleptMs: Math.round(performance.now() - start) };
});
