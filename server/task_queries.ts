/**
 * Requests about recorded tasks: `status`, `list` and `cancel`. Each reads or changes the task store; a
 * cancel also tells the workers and pushes the `cancelled` result to the connection awaiting it.
 *
 * A principal sees only its own tasks (an `admin` sees all): another's task answers `NOT_FOUND` exactly like
 * a missing one, and `list` shows only its own.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import type { TaskStore } from "../shared/ports.ts";
import {
  maxTasksLineBytes,
  type Request,
  type TaskListItem,
  type TaskView,
} from "../shared/protocol.ts";
import type { ServerBroker } from "../shared/ports.ts";
import type { ClientConnection } from "./connection.ts";
import type { ResultRouter } from "./result_routing.ts";
import { encodeCursor } from "./stores/records.ts";
import { findVisibleTask } from "./task_ids.ts";
import type { Principal } from "./principal.ts";

/** Who the dashboard's operator actions act as: they are behind the admin check. */
export const OPERATOR: Principal = { name: "panel", role: "admin" };

/** What the task queries need. */
export interface TaskQueryDeps {
  readonly store: TaskStore;
  /** The broker, once connected: a cancel is announced to the workers through it. */
  readonly broker: () => Pick<ServerBroker, "publishControl"> | undefined;
  readonly router: ResultRouter;
  /** The connection's output cap: a `list` page stays within half of it. */
  readonly maxOutputBytes: number;
}

const encoder = new TextEncoder();

/** Room kept in a `tasks` line for its envelope: type, request id (up to 128 characters) and cursor. */
const TASKS_ENVELOPE_BYTES = 2048;

function _utf8Bytes(text: string): number {
  return encoder.encode(text).length;
}

/**
 * A record as a `list` item: never its output (a page of large outputs would be a line of megabytes), only
 * that there is one and its size; `status` or `download` fetch it.
 */
function _listItem(view: TaskView): TaskListItem {
  if (view.output === undefined) return view;
  const { output, ...rest } = view;
  return { ...rest, outputOmitted: true, outputBytes: _utf8Bytes(JSON.stringify(output)) };
}

function _notFound(client: ClientConnection, id: string, taskId: string): void {
  client.sendError(
    id,
    new ColmenaError("NOT_FOUND", {
      message: `No existe ninguna tarea con id "${taskId.slice(0, 128)}"`,
    }),
  );
}

/** Answers `status` with the task's record (found by its id or a unique prefix of it), or `NOT_FOUND`. */
export async function status(
  client: ClientConnection,
  request: Extract<Request, { type: "status" }>,
  { store }: TaskQueryDeps,
): Promise<void> {
  const view = await findVisibleTask(store, request.taskId, client.principal);
  if (view === undefined) return _notFound(client, request.id, request.taskId);
  client.send({ type: "task", id: request.id, ...view });
}

/** The record of a task named by its id or a unique prefix of it, as an operator sees it, or `undefined`. */
export function findTask(
  store: Pick<TaskStore, "matchIds" | "get">,
  idOrPrefix: string,
): Promise<TaskView | undefined> {
  return findVisibleTask(store, idOrPrefix, OPERATOR);
}

/** What {@linkcode cancelTask} did: the full id, whether it was cancelled now, and the status it has. */
export interface CancelResult {
  readonly taskId: string;
  readonly cancelled: boolean;
  readonly status: TaskView["status"];
}

/**
 * Cancels a queued task that `principal` may see, named by its id or a unique prefix of it: the workers are
 * told and its awaiting connections get the `cancelled` result, after `answer` (the canceller's own reply)
 * has been sent. `undefined` when there is no such task. The `cancel` request and the dashboard's cancel
 * (as the operator) both come here.
 */
export async function cancelTask(
  idOrPrefix: string,
  principal: Principal,
  { store, broker, router }: Pick<TaskQueryDeps, "store" | "broker" | "router">,
  answer: (result: CancelResult) => void = () => {},
): Promise<CancelResult | undefined> {
  const found = await findVisibleTask(store, idOrPrefix, principal);
  if (found === undefined) return undefined;
  const taskId = found.taskId;
  // A result arriving meanwhile is pushed after its record: the store orders it after this cancel.
  const release = router.cancelling(taskId);
  try {
    const outcome = await store.cancel(taskId);
    if (outcome === "not_found") return undefined;
    const view = await store.get(taskId);
    const result = {
      taskId,
      cancelled: outcome === "cancelled",
      status: view?.status ?? "cancelled",
    };
    answer(result);
    if (outcome === "cancelled") {
      broker()?.publishControl({ type: "cancel", taskIds: [taskId] }).catch((err) =>
        log.error("No se pudo avisar a los workers de una cancelación", err)
      );
      if (view !== undefined) router.cancelled(taskId, view);
    }
    return result;
  } finally {
    release();
  }
}

/**
 * Answers `cancel`: a queued task (named by its id or a unique prefix of it) is cancelled, and its awaiting
 * connection gets the `cancelled` result. Replies name the full id.
 */
export async function cancel(
  client: ClientConnection,
  request: Extract<Request, { type: "cancel" }>,
  deps: TaskQueryDeps,
): Promise<void> {
  const result = await cancelTask(
    request.taskId,
    client.principal,
    deps,
    (r) => client.send({ type: "cancelled", id: request.id, ...r }),
  );
  if (result === undefined) return _notFound(client, request.id, request.taskId);
}

/** Answers `list` with one page of records. */
export async function list(
  client: ClientConnection,
  request: Extract<Request, { type: "list" }>,
  { store, maxOutputBytes }: TaskQueryDeps,
): Promise<void> {
  const f = request.filter ?? {};
  const page = await store.list({
    limit: request.limit,
    ...(f.statuses === undefined ? {} : { statuses: f.statuses }),
    ...(f.taskType === undefined ? {} : { taskType: f.taskType }),
    ...(f.clientKind === undefined ? {} : { clientKind: f.clientKind }),
    ...(f.clientName === undefined ? {} : { clientName: f.clientName }),
    ...(client.principal.role === "admin" ? {} : { owner: client.principal.name }),
    ...(f.since === undefined ? {} : { since: f.since }),
    ...(f.until === undefined ? {} : { until: f.until }),
    ...(request.cursor === undefined ? {} : { cursor: request.cursor }),
  });
  // A page ends early, at a record boundary, rather than build a line the connection would refuse.
  const budget = maxTasksLineBytes(maxOutputBytes) - TASKS_ENVELOPE_BYTES;
  const items: TaskListItem[] = [];
  let used = 0;
  let nextCursor = page.nextCursor;
  for (const view of page.items) {
    const item = _listItem(view);
    const bytes = _utf8Bytes(JSON.stringify(item)) + 1;
    const last = items.at(-1);
    if (last !== undefined && used + bytes > budget) {
      nextCursor = encodeCursor({ submittedAt: Date.parse(last.submittedAt), taskId: last.taskId });
      break;
    }
    items.push(item);
    used += bytes;
  }
  client.send({ type: "tasks", id: request.id, items, nextCursor });
}
