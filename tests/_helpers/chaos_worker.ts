/**
 * The worker of the chaos tests: `worker.ts` itself, with the built-in task types, except that an `echo`
 * whose message is {@linkcode POISON} throws every time, as a handler with a bug does. The server only
 * accepts the catalogue's types, so the poison travels as an ordinary `echo`; a plain `worker.ts` runs the
 * same task fine (the fix, deployed).
 *
 * Run as the main module: `deno run … tests/_helpers/chaos_worker.ts <name> [worker options]`.
 *
 * @module
 */
import { envNames } from "../../shared/config.ts";
import { readEnv } from "../../shared/lifecycle.ts";
import type { TaskDefinition } from "../../shared/tasks.ts";
import { registerBuiltinTasks } from "../../worker/builtin_tasks.ts";
import { type TaskHandler, TaskRegistry } from "../../worker/registry.ts";
import { workerMain } from "../../worker.ts";

/** The `echo` message that makes this worker's handler throw. */
export const POISON = { veneno: true } as const;

function isPoison(payload: unknown): boolean {
  if (typeof payload !== "object" || payload === null) return false;
  const message = (payload as { message?: unknown }).message;
  return typeof message === "object" && message !== null &&
    (message as { veneno?: unknown }).veneno === true;
}

/** A registry whose `echo` handler throws on {@linkcode POISON}. */
class _PoisonedRegistry extends TaskRegistry {
  override register<Def extends TaskDefinition>(definition: Def, handler: TaskHandler<Def>): this {
    if (definition.name !== "echo") return super.register(definition, handler);
    return super.register(definition, (payload, context) => {
      if (isPoison(payload)) throw new Error("Poisoned task: this handler always throws");
      return handler(payload, context);
    });
  }
}

if (import.meta.main) {
  await workerMain(
    { args: Deno.args, env: readEnv(envNames("worker")) },
    registerBuiltinTasks(new _PoisonedRegistry()),
  );
}
