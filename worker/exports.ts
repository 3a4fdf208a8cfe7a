/**
 * Loads a named function from a module, for handlers given as module and export name (isolated handlers,
 * in the worker and in its threads).
 *
 * @module
 */
import type { TaskContext } from "../shared/task_definition.ts";

const modules = new Map<string, Promise<Record<string, unknown>>>();

/**
 * The function `name` exported by `module`; the module is imported once. Rejects with `TypeError` when the
 * export is missing or not a function.
 */
export async function loadExport(
  module: URL | string,
  name: string,
): Promise<(payload: unknown, context: TaskContext) => unknown> {
  const url = String(module);
  let loading = modules.get(url);
  if (loading === undefined) {
    loading = import(url) as Promise<Record<string, unknown>>;
    modules.set(url, loading);
    // A module that failed to load may load later (a file fixed, a permission granted).
    loading.catch(() => modules.delete(url));
  }
  const fn = (await loading)[name];
  if (typeof fn !== "function") {
    throw new TypeError(`${url} does not export a function named "${name}"`);
  }
  return fn as (payload: unknown, context: TaskContext) => unknown;
}
