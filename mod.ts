/**
 * colmena's public entry for task modules: what a user's own task types import.
 *
 * A task module declares contracts with {@linkcode defineTask} and `export default`s them as a list; each
 * contract names the module of its handler, which exports `tarea.implement(fn)`. The server and the client
 * import only contracts; workers also import the handlers. See `docs/tareas-propias.md`.
 *
 * @example
 * ```ts
 * import { defineTask, z } from "../colmena/mod.ts";
 *
 * export const resumen = defineTask({
 *   name: "resumen",
 *   description: "Cuenta las frases de un texto",
 *   input: z.object({ texto: z.string().min(1) }),
 *   output: z.object({ frases: z.number().int() }),
 *   timeoutMs: 5_000,
 *   handler: new URL("./resumen_handler.ts", import.meta.url),
 * });
 *
 * export default [resumen];
 * ```
 *
 * @module
 */
export { z } from "zod";
export {
  type AnyTaskDefinition,
  defineTask,
  type HandlerRef,
  type InputOf,
  type OutputOf,
  type Parsed,
  type Random,
  type TaskCli,
  type TaskContext,
  type TaskDefinition,
  type TaskHandler,
  type TaskLimits,
  type TaskLogger,
  type TaskName,
  type TaskSpec,
} from "./shared/task_definition.ts";
export { ColmenaError } from "./shared/errors.ts";
export { type ErrorCode } from "./shared/errors.ts";
