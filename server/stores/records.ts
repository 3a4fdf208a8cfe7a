/**
 * What every `TaskStore` implementation shares: the stored shape of a task, its `TaskView`, list cursors and
 * the normalisation of times and text, so that the memory, SQLite and PostgreSQL stores answer alike.
 *
 * @module
 */
import { ColmenaError, isErrorCode } from "../../shared/errors.ts";
import type { NewTask } from "../../shared/ports.ts";
import {
  CLIENT_KINDS,
  type ClientKind,
  FINAL_STATUSES,
  TASK_STATUSES,
  type TaskStatus,
  type TaskView,
} from "../../shared/protocol.ts";
import type { ResultMessage } from "../../shared/queue_messages.ts";

/** The client recorded for a task whose result came without a record (`complete` of an unknown task). */
export const UNKNOWN_CLIENT: { readonly name: string; readonly kind: ClientKind } = {
  name: "desconocido",
  kind: "cli",
};

/** The largest page `list` returns. */
export const MAX_LIST_LIMIT = 500;

/** One stored task, column by column; times are milliseconds since the epoch, JSON values are JSON text. */
export interface TaskRecord {
  taskId: string;
  taskType: string;
  status: TaskStatus;
  priority: number;
  clientName: string;
  clientKind: ClientKind;
  origin: string;
  payload: string | null;
  payloadRef: string | null;
  /** The uploaded file the task reads, kept only so that pruning deletes it. */
  fileRef: string | null;
  output: string | null;
  outputRef: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  attempts: number;
  maxAttempts: number;
  timeoutMs: number | null;
  worker: string | null;
  durationMs: number | null;
  submittedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  idempotencyKey: string | null;
  /** The principal that owns the task; `""` for a record made from a result alone (only admins see it). */
  owner: string;
  /**
   * When the broker confirmed the task's publish, for tasks with an idempotency key (`null` until then, and
   * always for tasks without one): a repeat of the key republishes only a task whose publish may have failed.
   */
  publishedAt: number | null;
}

/** Whether a task in this state never changes again. */
export function isFinalStatus(status: TaskStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

/** Reads a stored status back; a value outside {@linkcode TASK_STATUSES} means a corrupt store. */
export function asTaskStatus(value: string): TaskStatus {
  const found = TASK_STATUSES.find((status) => status === value);
  if (found === undefined) throw new TypeError(`Cannot read task status: "${value}" is not one`);
  return found;
}

/** Reads a stored client kind back; a value outside {@linkcode CLIENT_KINDS} means a corrupt store. */
export function asClientKind(value: string): ClientKind {
  const found = CLIENT_KINDS.find((kind) => kind === value);
  if (found === undefined) throw new TypeError(`Cannot read client kind: "${value}" is not one`);
  return found;
}

/** Milliseconds since the epoch of an ISO 8601 time; throws `RangeError` when it is not one. */
export function toMillis(iso: string): number {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new RangeError(`Cannot read time: "${iso}" is not ISO 8601`);
  return ms;
}

/** The ISO 8601 form, with milliseconds and `Z`, of milliseconds since the epoch. */
export function toIso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Text as every backend can keep it: NUL, which PostgreSQL rejects and SQLite cuts text at, becomes U+FFFD.
 * Applied to free text from clients and workers (names, error messages), so that one odd character cannot
 * turn a result into a write that fails for ever.
 */
export function storableText(text: string): string {
  return text.includes("\u0000") ? text.replaceAll("\u0000", "\uFFFD") : text;
}

/** JSON text of a value, or `null` when it has none (`undefined`, a function). */
export function toJsonText(value: unknown): string | null {
  return JSON.stringify(value) ?? null;
}

/** The record of a task at submit time. */
export function newTaskRecord(task: NewTask): TaskRecord {
  return {
    taskId: task.taskId,
    taskType: storableText(task.taskType),
    status: "queued",
    priority: task.priority,
    clientName: storableText(task.client.name),
    clientKind: task.client.kind,
    origin: storableText(task.origin),
    payload: toJsonText(task.payload),
    payloadRef: task.payloadRef ?? null,
    fileRef: task.fileRef ?? null,
    output: null,
    outputRef: null,
    errorCode: null,
    errorMessage: null,
    attempts: 0,
    maxAttempts: task.maxAttempts,
    timeoutMs: task.timeoutMs,
    worker: null,
    durationMs: null,
    submittedAt: toMillis(task.submittedAt),
    startedAt: null,
    finishedAt: null,
    idempotencyKey: task.idempotencyKey === undefined ? null : storableText(task.idempotencyKey),
    owner: storableText(task.owner ?? task.client.name),
    publishedAt: null,
  };
}

/**
 * The record of a task known only by its result: type and origin from the result, client `desconocido`/`cli`,
 * priority 0, submitted when it started, one attempt allowed per attempt seen.
 */
export function orphanRecord(result: ResultMessage): TaskRecord {
  const record: TaskRecord = {
    taskId: result.taskId,
    taskType: storableText(result.taskType),
    status: "queued",
    priority: 0,
    clientName: UNKNOWN_CLIENT.name,
    clientKind: UNKNOWN_CLIENT.kind,
    origin: storableText(result.origin),
    payload: null,
    payloadRef: null,
    fileRef: null,
    output: null,
    outputRef: null,
    errorCode: null,
    errorMessage: null,
    attempts: 0,
    maxAttempts: result.attempt,
    timeoutMs: null,
    worker: null,
    durationMs: null,
    submittedAt: toMillis(result.startedAt),
    startedAt: null,
    finishedAt: null,
    idempotencyKey: null,
    owner: "",
    publishedAt: null,
  };
  applyResult(record, result);
  return record;
}

/** Writes a result into a record that is not final (the stores check that first). */
export function applyResult(record: TaskRecord, result: ResultMessage): void {
  record.status = result.status;
  record.worker = storableText(result.worker);
  record.startedAt = toMillis(result.startedAt);
  record.finishedAt = toMillis(result.finishedAt);
  record.durationMs = result.durationMs;
  record.attempts = Math.max(record.attempts, result.attempt);
  record.output = toJsonText(result.output);
  record.outputRef = result.outputRef ?? null;
  record.errorCode = result.error?.code ?? null;
  record.errorMessage = result.error === undefined ? null : storableText(result.error.message);
}

/**
 * What a record holds of its submit (see {@linkcode NewTask}), or `undefined` for a record made from a result
 * alone, which has no timeout of its own. The stored payload is JSON text, read back with `JSON.parse`.
 */
export function toSubmission(record: TaskRecord): NewTask | undefined {
  if (record.timeoutMs === null) return undefined;
  return {
    taskId: record.taskId,
    taskType: record.taskType,
    priority: record.priority,
    client: { name: record.clientName, kind: record.clientKind },
    submittedAt: toIso(record.submittedAt),
    origin: record.origin,
    ...(record.payload === null ? {} : { payload: JSON.parse(record.payload) }),
    ...(record.payloadRef === null ? {} : { payloadRef: record.payloadRef }),
    ...(record.fileRef === null ? {} : { fileRef: record.fileRef }),
    maxAttempts: record.maxAttempts,
    timeoutMs: record.timeoutMs,
    ...(record.idempotencyKey === null ? {} : { idempotencyKey: record.idempotencyKey }),
    owner: record.owner,
  };
}

/** The `TaskView` of a record: absent values are left out, and the payload is never shown. */
export function toTaskView(record: TaskRecord): TaskView {
  const view: TaskView = {
    taskId: record.taskId,
    taskType: record.taskType,
    status: record.status,
    priority: record.priority,
    client: { name: record.clientName, kind: record.clientKind },
    submittedAt: toIso(record.submittedAt),
    attempts: record.attempts,
    maxAttempts: record.maxAttempts,
  };
  if (record.startedAt !== null) view.startedAt = toIso(record.startedAt);
  if (record.finishedAt !== null) view.finishedAt = toIso(record.finishedAt);
  if (record.worker !== null) view.worker = record.worker;
  if (record.durationMs !== null) view.durationMs = record.durationMs;
  if (record.output !== null) view.output = JSON.parse(record.output);
  if (record.outputRef !== null) view.outputRef = record.outputRef;
  if (record.owner !== "") view.owner = record.owner;
  if (record.errorCode !== null) {
    view.error = {
      code: isErrorCode(record.errorCode) ? record.errorCode : "INTERNAL",
      message: record.errorMessage ?? "",
    };
  }
  return view;
}

/** Where a page of `list` ended: the submit time and id of its last record. */
export interface ListPosition {
  readonly submittedAt: number;
  readonly taskId: string;
}

/** The opaque cursor after `position`: base64url of JSON `[submittedAtMs, taskId]`. */
export function encodeCursor(position: ListPosition): string {
  const bytes = new TextEncoder().encode(JSON.stringify([position.submittedAt, position.taskId]));
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/** The latest time a `Date` holds, in epoch ms: a cursor's time beyond it was not made here. */
const MAX_DATE_MS = 8.64e15;

/** Whether `text` holds a C0 control character or DEL. */
function _hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** The longest task id a cursor may carry. */
const MAX_CURSOR_ID = 128;

/**
 * Reads a cursor from {@linkcode encodeCursor}; anything else is `INVALID_MESSAGE`, crafted ones included (a
 * time no `Date` holds, an id with control characters or lone surrogates, or too long), so that no store
 * passes them on to its database.
 */
export function decodeCursor(cursor: string): ListPosition {
  let parsed: unknown;
  try {
    const bytes = Uint8Array.fromBase64(cursor, { alphabet: "base64url" });
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (cause) {
    throw new ColmenaError("INVALID_MESSAGE", {
      message: "El cursor de la lista no es válido",
      cause,
    });
  }
  if (
    Array.isArray(parsed) && parsed.length === 2 && Number.isSafeInteger(parsed[0]) &&
    Math.abs(parsed[0]) <= MAX_DATE_MS && typeof parsed[1] === "string" &&
    parsed[1].length <= MAX_CURSOR_ID && parsed[1].isWellFormed() &&
    !_hasControl(parsed[1])
  ) {
    return { submittedAt: parsed[0], taskId: parsed[1] };
  }
  throw new ColmenaError("INVALID_MESSAGE", { message: "El cursor de la lista no es válido" });
}

/** Whether `prefix` may be looked up as a shortened task id: 8 to 128 characters of `0-9`, `a-f` and `-`. */
export function isTaskIdPrefix(prefix: string): boolean {
  return /^[0-9a-f-]{8,128}$/.test(prefix);
}

/**
 * The half-open range `[low, high)` holding exactly the ids that start with an ASCII `prefix`, in byte order:
 * `high` is the prefix with its last character incremented ("0b7e" → "0b7f").
 */
export function prefixRange(prefix: string): [low: string, high: string] {
  const last = prefix.charCodeAt(prefix.length - 1);
  return [prefix, prefix.slice(0, -1) + String.fromCharCode(last + 1)];
}

/** Checks a page size: an integer from 1 to {@linkcode MAX_LIST_LIMIT}, else `RangeError`. */
export function checkListLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new RangeError(`Cannot list tasks: limit ${limit} is not an integer from 1 to 500`);
  }
  return limit;
}

/** Checks a prune size: a positive integer, else `RangeError`. */
export function checkPruneLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`Cannot prune tasks: limit ${limit} is not a positive integer`);
  }
  return limit;
}
