/**
 * Task ids: how the server makes them ({@linkcode newTaskId}), and shortened ones: `status`, `cancel` and
 * `watch` accept a unique prefix of a task id (at least 8 characters, as `historial` shows them) wherever a
 * full id is not found.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import type { TaskStore } from "../shared/ports.ts";
import type { TaskView } from "../shared/protocol.ts";
import { mayAccess, type Principal } from "./principal.ts";

/** 2³², the span of the counter that leads each task id. */
const COUNTER_SPAN = 2 ** 32;

/** The counter of the last id this process made; `undefined` before the first. */
let lastCounter: number | undefined;

/**
 * The next value of the counter that leads each task id: the microseconds of the clock modulo 2³², or one
 * more than the last value when the clock has not moved past it (ids made in the same microsecond, or a clock
 * set back), so that the ids one process makes start with strictly increasing 8 hexadecimal digits for 71
 * minutes at a time.
 */
function nextCounter(): number {
  const now = Math.floor((performance.timeOrigin + performance.now()) * 1000) % COUNTER_SPAN;
  const last = lastCounter;
  const ahead = last === undefined ? 1 : (now - last + COUNTER_SPAN) % COUNTER_SPAN;
  lastCounter = last === undefined || (ahead > 0 && ahead < COUNTER_SPAN / 2)
    ? now
    : (last + 1) % COUNTER_SPAN;
  return lastCounter;
}

/**
 * A new task id: a UUID of version 8 (RFC 9562, custom layout) whose first 32 bits are a counter of
 * microseconds ({@linkcode nextCounter}) and whose other 90 bits (all but the version and variant) are
 * random, as in `crypto.randomUUID()`.
 *
 * Why the counter: the ids a server makes one after another sort one after another, so that the primary
 * key index of the SQL stores takes each new id beside the last one (a few pages written per batch) instead
 * of at a random place (one page per task: measured, the SQLite insert cost 35–55 µs of CPU with random
 * ids against 18–22 with these, growing with the table). The first 8 characters, those `historial` shows
 * and a shortened id needs, still tell apart the tasks of one server for 71 minutes, and older ones as
 * often as random ids would.
 */
export function newTaskId(): string {
  const random = crypto.randomUUID();
  const counter = nextCounter().toString(16).padStart(8, "0");
  return `${counter}${random.slice(8, 14)}8${random.slice(15)}`;
}

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
