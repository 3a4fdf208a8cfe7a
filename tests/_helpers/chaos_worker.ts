/**
 * The worker of the chaos tests: `worker.ts` itself, with the built-in task types, except that `echo` runs
 * `chaos_handlers.ts`: it throws on {@linkcode POISON}, as a handler with a bug does, and on
 * {@linkcode SPIN} loops for ever in a thread, as a CPU-bound handler that cannot be aborted does. The server
 * only accepts the catalogue's types, so both travel as an ordinary `echo`; a plain `worker.ts` runs the same
 * tasks fine (the fix, deployed).
 *
 * Run as the main module: `deno run … tests/_helpers/chaos_worker.ts <name> [worker options]`.
 *
 * @module
 */
import { envNames } from "../../shared/config.ts";
import { readEnv } from "../../shared/lifecycle.ts";
import type { TaskDefinition } from "../../shared/tasks.ts";
import { type TaskHandler, TaskRegistry } from "../../worker/registry.ts";
import { workerMain } from "../../worker.ts";
import { isSpin, POISON, SPIN } from "./chaos_handlers.ts";

export { POISON, SPIN };

/** A registry whose `echo` is the chaos one, isolated in a thread when it spins. */
class _ChaosRegistry extends TaskRegistry {
  override register<Def extends TaskDefinition>(definition: Def, handler: TaskHandler<Def>): this {
    if (definition.name !== "echo") return super.register(definition, handler);
    return this.registerIsolated(definition, {
      module: new URL("./chaos_handlers.ts", import.meta.url),
      export: "echo",
      inlineWhen: (payload) => !isSpin(payload),
    });
  }
}

if (import.meta.main) {
  await workerMain(
    { args: Deno.args, env: readEnv(envNames("worker")) },
    new _ChaosRegistry(),
  );
}
