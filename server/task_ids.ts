/**
 * Shortened task ids: `status`, `cancel` and `watch` accept a unique prefix of a task id (at least 8
 * characters, as `historial` shows them) wherever a full id is not found.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import type { TaskStore } from "../shared/ports.ts";

/** Matches read to tell the client how many tasks an ambiguous prefix names ("more than" past this). */
const MAX_COUNTED_MATCHES = 100;

/**
 * The full id of the only task whose id starts with `prefix` (case-insensitive), or `undefined` when none
 * does or `prefix` is not 8 to 128 characters of hexadecimal digits and `-`; throws `AMBIGUOUS_ID` when
 * several do. Callers try the id as a full one first.
 */
export async function resolveTaskIdPrefix(
  store: Pick<TaskStore, "matchIds">,
  prefix: string,
): Promise<string | undefined> {
  if (!/^[0-9a-fA-F-]{8,128}$/.test(prefix)) return undefined;
  const short = prefix.toLowerCase();
  const ids = await store.matchIds(short, MAX_COUNTED_MATCHES + 1);
  if (ids.length <= 1) return ids[0];
  const count = ids.length > MAX_COUNTED_MATCHES
    ? `más de ${MAX_COUNTED_MATCHES}`
    : String(ids.length);
  throw new ColmenaError("AMBIGUOUS_ID", {
    message: `El identificador abreviado "${short}" coincide con ${count} tareas; ` +
      "escriba más caracteres o el identificador completo",
  });
}
