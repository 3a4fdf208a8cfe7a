/**
 * Puts a catalogue's task types in a worker's registry: each definition's handler module is imported (the
 * contract names it), checked, and registered inline or isolated in threads as the definition says.
 *
 * @module
 */
import type { AnyTaskDefinition } from "../shared/task_definition.ts";
import { firstLineOf } from "../shared/task_modules.ts";
import { loadExport } from "./exports.ts";
import type { TaskRegistry } from "./registry.ts";

/** Why a handler cannot be used: a Spanish sentence naming the task type and its module. */
export class HandlerLoadError extends Error {
  override readonly name = "HandlerLoadError";
}

/**
 * Imports every definition's handler module and registers it. Loading at start means a handler that does
 * not load stops the worker before it takes any task; throws {@linkcode HandlerLoadError}.
 */
export async function registerDefinitions(
  registry: TaskRegistry,
  definitions: readonly AnyTaskDefinition[],
): Promise<TaskRegistry> {
  for (const definition of definitions) {
    const { module, export: name } = definition.handler;
    let handler: Awaited<ReturnType<typeof loadExport>>;
    try {
      handler = await loadExport(module, name);
    } catch (err) {
      const where = `${module.pathname}${name === "default" ? "" : ` (exportación «${name}»)`}`;
      throw new HandlerLoadError(
        err instanceof TypeError && /does not export/.test(String(err.message))
          ? `El handler de la tarea «${definition.name}» no es una función: ${where} debe exportar ` +
            `${name === "default" ? "por defecto " : ""}tarea.implement(fn)`
          : `No se pudo cargar el handler de la tarea «${definition.name}» (${where}): ${
            firstLineOf(err)
          }`,
        { cause: err },
      );
    }
    if (definition.isolated === false) {
      registry.register(definition, handler);
    } else {
      const inlineWhen = definition.isolated.inlineWhen;
      registry.registerIsolated(definition, {
        module,
        export: name,
        ...(inlineWhen === undefined ? {} : { inlineWhen }),
      });
    }
  }
  return registry;
}
