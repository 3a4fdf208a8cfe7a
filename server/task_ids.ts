/**
 * Shortened task ids: `status`, `cancel` and `watch` accept a unique prefix of a task id (at least 8
 * characters, as `historial` shows them) wherever a full id is not found.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import type { TaskStore } from "../shared/ports.ts";
import type { TaskView } from "../shared/protocol.ts";
import { mayAccess, type Principal } from "./principal.ts";

/** Matches read to tell the client how many tasks an ambiguous prefix names ("more than" past this). */
const MAX_COUNTED_MATCHES = 100;

/**
 * The full id of the only task whose id starts with `prefix` (case-insensitive), or `undefined` when none
 * does or `prefix` is not 8 to 128 characters of hexadecimal digits and `-`; throws `AMBIGUOUS_ID` when
 * several do. Callers try the id as a full one first. With `visible`, only the ids it accepts count (a
 * principal's own tasks), so that an ambiguity never reveals another principal's task.
 */
export async function resolveTaskIdPrefix(
  store: Pick<TaskStore, "matchIds">,
  prefix: string,
  visible?: (taskId: string) => Promise<boolean>,
): Promise<string | undefined> {
  if (!/^[0-9a-fA-F-]{8,128}$/.test(prefix)) return undefined;
  const short = prefix.toLowerCase();
  let ids = await store.matchIds(short, MAX_COUNTED_MATCHES + 1);
  if (visible !== undefined && ids.length > 0) {
    const shown = await Promise.all(ids.map(visible));
    ids = ids.filter((_id, i) => shown[i]);
  }
  if (ids.length <= 1) return ids[0];
  const count = ids.length > MAX_COUNTED_MATCHES
    ? `más de ${MAX_COUNTED_MATCHES}`
    : String(ids.length);
  throw new ColmenaError("AMBIGUOUS_ID", {
    message: `El identificador abreviado "${short}" coincide con ${count} tareas; ` +
      "escriba más caracteres o el identificador completo",
  });
}

/**
 * The record of the task named by `idOrPrefix` (a full id, or a unique prefix of one) that `principal` may
 * see, or `undefined`: another principal's task is not found, exactly like a missing one.
 */
export async function findVisibleTask(
  store: Pick<TaskStore, "matchIds" | "get">,
  idOrPrefix: string,
  principal: Principal,
): Promise<TaskView | undefined> {
  const sees = (view: TaskView | undefined): view is TaskView =>
    view !== undefined && mayAccess(principal, view.owner ?? "");
  const view = await store.get(idOrPrefix);
  if (sees(view)) return view;
  const full = await resolveTaskIdPrefix(
    store,
    idOrPrefix,
    principal.role === "admin" ? undefined : async (taskId) => sees(await store.get(taskId)),
  );
  if (full === undefined) return undefined;
  const found = await store.get(full);
  return sees(found) ? found : undefined;
}
