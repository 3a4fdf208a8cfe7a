/**
 * Loads the user's task modules (`--tareas`): each `export default`s a list of task definitions made with
 * `defineTask`. Importing a contract module loads no handler code; only a worker imports the handler
 * modules the definitions name.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { TaskCatalog } from "./catalog.ts";
import {
  type AnyTaskDefinition,
  isTaskDefinition,
  TaskDefinitionError,
} from "./task_definition.ts";

/** Why a task module cannot be used: a Spanish sentence that names the module. */
export class TaskModuleError extends Error {
  override readonly name = "TaskModuleError";
}

/** A loaded task module: where it is and what it defines. */
export interface LoadedTaskModule {
  /** The path as given. */
  readonly path: string;
  /** The module's file URL. */
  readonly url: URL;
  readonly definitions: readonly AnyTaskDefinition[];
}

/** The file URL of a task module path, absolute or relative to `cwd`. */
export function taskModuleUrl(path: string, cwd: string): URL {
  return pathToFileURL(isAbsolute(path) ? path : resolve(cwd, path));
}

/** The first line of an error's message, without ANSI colours: what a person is shown of a load failure. */
export function firstLineOf(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  // Deno's own stack frames and ANSI colours are not for people.
  // deno-lint-ignore no-control-regex
  return (text.split("\n")[0] ?? "").replaceAll(/\x1b\[[0-9;]*m/g, "").trim();
}

/** Imports one task module and checks what it exports; throws {@linkcode TaskModuleError}. */
export async function loadTaskModule(path: string, cwd: string): Promise<LoadedTaskModule> {
  const url = taskModuleUrl(path, cwd);
  let exports: Record<string, unknown>;
  try {
    exports = await import(url.href);
  } catch (err) {
    if (err instanceof TaskDefinitionError) {
      throw new TaskModuleError(`Módulo de tareas ${path}: ${err.message}`, { cause: err });
    }
    if (err instanceof Deno.errors.NotCapable) {
      throw new TaskModuleError(
        `No hay permiso para leer el módulo de tareas ${path} (${firstLineOf(err)}). ` +
          "Arranque el rol con su tarea de deno.json, que concede la lectura de la carpeta del módulo, " +
          "o añada --allow-read con esa carpeta",
        { cause: err },
      );
    }
    const message = firstLineOf(err);
    if (/Module not found|No such file|not found/i.test(message)) {
      throw new TaskModuleError(`No se encuentra el módulo de tareas ${path} (${url.pathname})`, {
        cause: err,
      });
    }
    throw new TaskModuleError(`No se pudo cargar el módulo de tareas ${path}: ${message}`, {
      cause: err,
    });
  }
  const list = exports.default;
  if (!Array.isArray(list) || list.length === 0) {
    throw new TaskModuleError(
      `El módulo de tareas ${path} no define tareas: debe hacer «export default [tarea1, tarea2]» ` +
        "con tareas creadas por defineTask",
    );
  }
  list.forEach((item, index) => {
    if (!isTaskDefinition(item)) {
      throw new TaskModuleError(
        `El módulo de tareas ${path}: el elemento ${
          index + 1
        } de su exportación por defecto no es ` +
          "una tarea de defineTask con esquemas de zod (importe defineTask y z del mod.ts de colmena)",
      );
    }
  });
  return { path, url, definitions: list as AnyTaskDefinition[] };
}

/**
 * Loads every task module and builds the catalogue of built-in plus loaded task types. Throws
 * {@linkcode TaskModuleError} when a module does not load, defines nothing, or repeats a name.
 */
export async function loadCatalog(
  paths: readonly string[],
  cwd: string = Deno.cwd(),
): Promise<{ catalog: TaskCatalog; modules: LoadedTaskModule[] }> {
  const modules: LoadedTaskModule[] = [];
  for (const path of paths) modules.push(await loadTaskModule(path, cwd));
  try {
    const catalog = TaskCatalog.withBuiltins(modules.flatMap((m) => m.definitions));
    return { catalog, modules };
  } catch (err) {
    if (err instanceof TaskDefinitionError) {
      throw new TaskModuleError(`Módulos de tareas ${paths.join(", ")}: ${err.message}`, {
        cause: err,
      });
    }
    throw err;
  }
}
