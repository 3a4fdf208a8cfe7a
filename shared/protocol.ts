/**
 * The wire contract between clients and servers: NDJSON frames tagged by `type`.
 *
 * Each request a client sends carries a client-chosen `id`; the reply to it echoes that `id`. Replies may
 * come in any order (a submit waits for the store and the broker's confirm while later requests are
 * answered), so clients match them by `id`. Results are pushed later, unasked, on the connection that
 * submitted the task (or that sent `watch`), never before the task's `accepted`, and carry the `taskId`.
 * `docs/protocol.md` is the prose form of this file.
 *
 * @module
 */
import { z } from "zod";
import { ColmenaError, ERROR_CODES, ERRORS } from "./errors.ts";
import { exceedsJsonDepth } from "./framing.ts";

z.config(z.locales.es());

/** The protocol version this code speaks; it travels in `hello` and `welcome`. */
export const PROTOCOL_VERSION = 1;

/** The kinds of client; every task carries its client's kind. */
export const CLIENT_KINDS = ["web", "mobile", "cli"] as const;

/** A kind of client: `web`, `mobile` or `cli`. */
export type ClientKind = (typeof CLIENT_KINDS)[number];

/**
 * The states of a task. `queued` → `running` → `succeeded` | `failed`; `queued` → `cancelled`. A task that
 * is retried goes back from `running` to `queued`. The last three are final: a task never leaves them.
 */
export const TASK_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;

/** The final states, which a task never leaves. */
export const FINAL_STATUSES: readonly TaskStatus[] = ["succeeded", "failed", "cancelled"];

/** One of {@linkcode TASK_STATUSES}. */
export type TaskStatus = (typeof TASK_STATUSES)[number];

const requestId = z.string().min(1).max(128);

/** Who the client says it is; a client that never says `hello` is `{ name: "anonimo", kind: "cli" }`. */
export const ClientInfo = z.object({
  name: z.string().min(1).max(100).default("anonimo"),
  kind: z.enum(CLIENT_KINDS).default("cli"),
});

/** Per-task options of a `submit`. */
export const SubmitOptions = z.object({
  /** 0 (lowest, the default) to 9 (highest): queued tasks of higher priority are delivered first. */
  priority: z.number().int().min(0).max(9).optional(),
  /** Attempts before the task fails for good (a handler that throws or times out is retried). */
  maxAttempts: z.number().int().min(1).max(20).optional(),
  /**
   * A key of the client's choosing: a second submit with the same key from the same principal (token, or
   * `hello` name without tokens) gets the first task's id instead of a new task (safe retries of a submit whose reply was lost).
   */
  idempotencyKey: z.string().min(1).max(200).optional(),
  /**
   * How long one attempt may run, in milliseconds; default per task type. It aborts handlers that work
   * asynchronously (`sleep`, `hash`); a synchronous handler (`text`, `numbers`, `echo`) runs to its end.
   */
  timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
});

/** Per-task options of a `submit`, as parsed. */
export type SubmitOptions = z.output<typeof SubmitOptions>;

/** A task as submitted: its type name and its payload, which is validated against the catalogue. */
export const TaskSpec = z.object({
  type: z.string().min(1).max(64),
  payload: z.unknown(),
  /**
   * A file uploaded before (`uploaded.ref`) whose UTF-8 text is the payload's field `field` (e.g. the `text` of
   * a `text` task). The file travels as an object, never through RabbitMQ.
   */
  file: z.object({ ref: z.string().min(1).max(300), field: z.string().min(1).max(64) }).optional(),
});

/**
 * `hello`: introduction, answered with `welcome`. Optional on a server without tokens; on one with tokens
 * (`--tokens`) it must come first and carry a valid `token`, or the connection gets `UNAUTHORIZED` and is
 * closed.
 */
export const HelloRequest = z.object({
  type: z.literal("hello"),
  id: requestId,
  client: ClientInfo.optional(),
  protocol: z.number().int().optional(),
  /**
   * The client's access token (`clm_…`), required by a server started with `--tokens`: the connection then
   * acts for the token's principal (its name and role), not for `client.name`.
   */
  token: z.string().min(1).max(200).optional(),
});

/** `submit`: enqueue a task; answered with `accepted` once the broker has stored it, or `error`. */
export const SubmitRequest = z.object({
  type: z.literal("submit"),
  id: requestId,
  task: TaskSpec,
  options: SubmitOptions.optional(),
});

/** Most tasks in one `submit_many`. */
export const MAX_BATCH_TASKS = 1_000;

/**
 * `submit_many`: enqueue several tasks in one frame; answered with one `accepted_many` whose `items` follow
 * the order of `tasks`. Each task is its own: its own id, record, retries, result (pushed as a `result`),
 * quota and idempotency key, and a bad one gets its own error while the rest are queued.
 */
export const SubmitManyRequest = z.object({
  type: z.literal("submit_many"),
  id: requestId,
  tasks: z.array(z.object({ task: TaskSpec, options: SubmitOptions.optional() })).min(1).max(
    MAX_BATCH_TASKS,
  ),
});

/** `status`: ask for a task by id; answered with `task` or `error` `NOT_FOUND`. */
export const StatusRequest = z.object({
  type: z.literal("status"),
  id: requestId,
  taskId: z.string().min(1).max(128),
});

/** `ping`: answered with `pong`. */
export const PingRequest = z.object({ type: z.literal("ping"), id: requestId });

const taskIdField = z.string().min(1).max(128);

/** `cancel`: cancel a queued task; answered with `cancelled`. */
export const CancelRequest = z.object({
  type: z.literal("cancel"),
  id: requestId,
  taskId: taskIdField,
});

/** `watch`: have the results of these tasks pushed to this connection (after a reconnect); answered with `watching`. */
export const WatchRequest = z.object({
  type: z.literal("watch"),
  id: requestId,
  taskIds: z.array(taskIdField).min(1).max(10_000),
});

/** `list`: a page of task records, newest first; answered with `tasks`. */
export const ListRequest = z.object({
  type: z.literal("list"),
  id: requestId,
  filter: z.object({
    statuses: z.array(z.enum(TASK_STATUSES)).optional(),
    taskType: z.string().max(64).optional(),
    clientKind: z.enum(CLIENT_KINDS).optional(),
    clientName: z.string().max(100).optional(),
    since: z.iso.datetime().optional(),
    until: z.iso.datetime().optional(),
  }).optional(),
  limit: z.number().int().min(1).max(500).default(50),
  cursor: z.string().max(500).optional(),
});

/** `workers`: the workers alive now; answered with `workers`. */
export const WorkersRequest = z.object({ type: z.literal("workers"), id: requestId });

/** `dlq`: look at (`list`) or requeue (`requeue`) tasks in the dead-letter queue; answered with `dlq`. */
export const DlqRequest = z.object({
  type: z.literal("dlq"),
  id: requestId,
  action: z.enum(["list", "requeue"]),
  /** For `requeue`: these tasks only; all (up to `limit`) when absent. */
  taskIds: z.array(taskIdField).max(1_000).optional(),
  limit: z.number().int().min(1).max(1_000).default(50),
});

/** Largest `data` of one `upload` frame, in base64 characters (768 KiB of bytes). */
export const MAX_UPLOAD_CHUNK_CHARS = 1024 * 1024;

/**
 * `upload`: a piece of a file, in order. The first piece has no `uploadId`; its reply `uploading` gives the
 * id that the next pieces carry. The piece with `last: true` ends the file: its reply is `uploaded`.
 */
export const UploadRequest = z.object({
  type: z.literal("upload"),
  id: requestId,
  uploadId: z.string().min(1).max(64).optional(),
  /** The bytes of this piece, base64. */
  data: z.base64().max(MAX_UPLOAD_CHUNK_CHARS),
  last: z.boolean().default(false),
});

/** `download`: an object by reference (`outputRef` of a result); answered with `chunk` frames. */
export const DownloadRequest = z.object({
  type: z.literal("download"),
  id: requestId,
  ref: z.string().min(1).max(300),
});

/** Every frame a client may send. */
export const Request = z.discriminatedUnion("type", [
  UploadRequest,
  DownloadRequest,
  HelloRequest,
  SubmitRequest,
  SubmitManyRequest,
  StatusRequest,
  PingRequest,
  CancelRequest,
  WatchRequest,
  ListRequest,
  WorkersRequest,
  DlqRequest,
]);

/** A frame a client sends. */
export type Request = z.output<typeof Request>;

/** The wire shape of an error. */
export const WireErrorSchema = z.object({ code: z.enum(ERROR_CODES), message: z.string() });

/**
 * The limits a server enforces, as `welcome` tells them, so that a client can stay within them. Sizes are
 * bytes, times milliseconds. A later server may add fields.
 */
export const ServerLimits = z.object({
  /** Longest request line, without its `\n` (`FRAME_TOO_LARGE` above). */
  maxLineBytes: z.number().int(),
  /** Deepest JSON nesting (`TOO_DEEP` above). */
  maxJsonDepth: z.number().int(),
  /** Output a connection may leave unread before it is dropped with `SLOW_CONSUMER`. */
  maxOutputBytes: z.number().int(),
  /** Longest a single write may block before `SLOW_CONSUMER`. */
  writeTimeoutMs: z.number().int(),
  /** Requests per second on one connection (`RATE_LIMITED` above). */
  rateLimit: z.number(),
  /** Requests a connection may save up for bursts. */
  rateBurst: z.number(),
  /** Unanswered requests per connection (`OVERLOADED` above). */
  maxPending: z.number().int(),
  /**
   * Bytes of unanswered requests per connection past which the server stops reading it until some are
   * answered (no error: TCP backpressure). Absent from servers before 2026-12-03.
   */
  maxPendingBytes: z.number().int().optional(),
  /** Idle time before `IDLE_TIMEOUT`. */
  idleTimeoutMs: z.number().int(),
  /** Time a line may stay incomplete before `IDLE_TIMEOUT`. */
  partialLineTimeoutMs: z.number().int(),
  /** Largest uploaded file. */
  maxUploadBytes: z.number().int(),
  /** How long a submit waits for the broker to come back before `BROKER_UNAVAILABLE`/`PUBLISH_UNCONFIRMED`. */
  publishRetryMs: z.number().int(),
  /** Longest `tasks` line this server builds. */
  maxTasksLineBytes: z.number().int(),
});

/** The limits a server enforces. */
export type ServerLimits = z.output<typeof ServerLimits>;

/** `welcome`: reply to `hello`. */
export const WelcomeReply = z.object({
  type: z.literal("welcome"),
  id: z.string(),
  serverId: z.string(),
  protocol: z.number().int(),
  taskTypes: z.array(z.string()),
  /** The server's limits; absent from servers older than this field. */
  limits: ServerLimits.optional(),
  /**
   * Who the connection acts for, as the server sees it: the `hello` name, or the subject of the client
   * certificate under mutual TLS. Absent from servers older than this field.
   */
  principal: z.object({ name: z.string(), role: z.enum(["cliente", "admin"]) }).optional(),
});

/**
 * `accepted`: the task is stored by the broker and will run. A submit that repeats an idempotency key gets
 * the first task's id and `duplicate: true`: nothing of the repeat is recorded or run, its options included.
 */
export const AcceptedReply = z.object({
  type: z.literal("accepted"),
  id: z.string(),
  taskId: z.string(),
  /** Present (`true`) only when this submit repeated an idempotency key and `taskId` is the first task. */
  duplicate: z.literal(true).optional(),
  /**
   * On a duplicate: whether the repeat's task (type, validated payload or file) differs from the first's,
   * which is the one that runs. Absent when the server could not read the first payload back.
   */
  payloadDiffers: z.boolean().optional(),
});

/** One task of a `submit_many`: accepted (as `accepted` says) or refused with its own error. */
export const BatchItem = z.union([
  z.object({
    taskId: z.string(),
    duplicate: z.literal(true).optional(),
    payloadDiffers: z.boolean().optional(),
  }),
  z.object({ error: WireErrorSchema }),
]);

/** One task of an `accepted_many`. */
export type BatchItem = z.output<typeof BatchItem>;

/**
 * `accepted_many`: the answer to a `submit_many`, once every task in it is settled; `items[i]` is about
 * `tasks[i]`. The results of the accepted tasks are pushed after it.
 */
export const AcceptedManyReply = z.object({
  type: z.literal("accepted_many"),
  id: z.string(),
  items: z.array(BatchItem),
});

/** `result`: pushed to the submitting connection when a task ends. */
export const ResultPush = z.object({
  type: z.literal("result"),
  taskId: z.string(),
  taskType: z.string(),
  status: z.enum(["succeeded", "failed", "cancelled"]),
  output: z.unknown().optional(),
  error: WireErrorSchema.optional(),
  worker: z.string(),
  durationMs: z.number(),
  /** The attempt that produced this result. */
  attempts: z.number().int().positive().optional(),
  /** An output too large to push is stored as an object: fetch it with `download`. */
  outputRef: z.string().optional(),
  /** The size of that object, in bytes. */
  outputBytes: z.number().int().nonnegative().optional(),
});

/** The record of a task, as `status` answers it. */
export const TaskView = z.object({
  taskId: z.string(),
  taskType: z.string(),
  status: z.enum(TASK_STATUSES),
  priority: z.number().int(),
  client: z.object({ name: z.string(), kind: z.enum(CLIENT_KINDS) }),
  submittedAt: z.string(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  worker: z.string().optional(),
  durationMs: z.number().optional(),
  /** Attempts started so far (0 while it has never run). */
  attempts: z.number().int().nonnegative().optional(),
  /** Attempts allowed before the task fails for good. */
  maxAttempts: z.number().int().positive().optional(),
  output: z.unknown().optional(),
  /** An output stored as an object: fetch it with `download`. */
  outputRef: z.string().optional(),
  error: WireErrorSchema.optional(),
  /** The principal that submitted it: a token's name, or the `hello` name on a server without tokens. */
  owner: z.string().optional(),
});

/** The record of a task. */
export type TaskView = z.output<typeof TaskView>;

/**
 * The longest `tasks` line the server builds, in UTF-8 bytes without its `\n` (and never more than half the
 * server's `maxOutputBytes`): a page that would be longer ends early, with a `nextCursor` where it ended.
 */
export const MAX_TASKS_LINE_BYTES = 1024 * 1024;

/** The longest `tasks` line of a server whose output cap is `maxOutputBytes`, in UTF-8 bytes. */
export function maxTasksLineBytes(maxOutputBytes: number): number {
  return Math.min(MAX_TASKS_LINE_BYTES, Math.floor(maxOutputBytes / 2));
}

/**
 * A task record as a `list` page carries it: the `task` fields without the output (older servers left small
 * outputs in: a client reads `output` when present, and asks `status` otherwise). One page never makes a line longer than
 * {@linkcode MAX_TASKS_LINE_BYTES}.
 */
export const TaskListItem = TaskView.extend({
  /** Present (`true`) when the task has an output, left out of the page: ask `status` or `download`. */
  outputOmitted: z.literal(true).optional(),
  /** With `outputOmitted`: the size of the output's JSON, in UTF-8 bytes. */
  outputBytes: z.number().int().nonnegative().optional(),
});

/** A task record in a `list` page. */
export type TaskListItem = z.output<typeof TaskListItem>;

/** `task`: reply to `status`. */
export const TaskReply = TaskView.extend({ type: z.literal("task"), id: z.string() });

/** `pong`: reply to `ping`. */
export const PongReply = z.object({ type: z.literal("pong"), id: z.string() });

/** `error`: reply to a request that failed; `id` is null when the request's id could not be read. */
export const ErrorReply = z.object({
  type: z.literal("error"),
  id: z.string().nullable(),
  code: z.enum(ERROR_CODES),
  message: z.string(),
});

/**
 * `cancelled`: reply to `cancel`; `cancelled` says whether it was in time: the task is then final and its
 * result, if a worker had just taken it, is discarded (it does not run if no worker had taken it yet).
 */
export const CancelledReply = z.object({
  type: z.literal("cancelled"),
  id: z.string(),
  taskId: z.string(),
  cancelled: z.boolean(),
  /** The task's state after the request. */
  status: z.enum(TASK_STATUSES),
});

/** `watching`: reply to `watch`; results of `taskIds` follow as `result` pushes, at once for finished ones. */
export const WatchingReply = z.object({
  type: z.literal("watching"),
  id: z.string(),
  taskIds: z.array(z.string()),
  /** Ids no task has. */
  missing: z.array(z.string()),
});

/**
 * `tasks`: reply to `list`: up to `limit` records, fewer when the line would pass
 * {@linkcode MAX_TASKS_LINE_BYTES}; `nextCursor` is `null` only on the last page.
 */
export const TasksReply = z.object({
  type: z.literal("tasks"),
  id: z.string(),
  items: z.array(TaskListItem),
  nextCursor: z.string().nullable(),
});

/** One worker, as the server last heard from it. */
export const WorkerView = z.object({
  worker: z.string(),
  host: z.string(),
  pid: z.number().int(),
  concurrency: z.number().int(),
  inProgress: z.number().int(),
  processed: z.number().int(),
  failed: z.number().int(),
  startedAt: z.string(),
  lastSeen: z.string(),
  stopping: z.boolean(),
  /** The task types the worker runs (the queues it consumes); empty when its heartbeat does not say. */
  types: z.array(z.string()),
  /** Present (`true`) when another live worker has the same name (on another host or process). */
  duplicate: z.literal(true).optional(),
});

/**
 * `workers`: reply to `workers`: those heard from in the last 15 seconds, less those whose last heartbeat
 * said they stopped.
 */
export const WorkersReply = z.object({
  type: z.literal("workers"),
  id: z.string(),
  workers: z.array(WorkerView),
});

/** One task in the dead-letter queue. */
export const DeadLetterView = z.object({
  taskId: z.string(),
  taskType: z.string(),
  attempt: z.number().int(),
  maxAttempts: z.number().int(),
  client: z.object({ name: z.string(), kind: z.string() }),
  submittedAt: z.string(),
  error: WireErrorSchema.extend({ code: z.string() }).nullable(),
  deadAt: z.string().nullable(),
});

/** `dlq`: reply to `dlq`: the entries seen (`list`) or the ids moved back to the task queue (`requeue`). */
export const DlqReply = z.object({
  type: z.literal("dlq"),
  id: z.string(),
  entries: z.array(DeadLetterView).optional(),
  requeued: z.array(z.string()).optional(),
});

/** `uploading`: reply to an `upload` piece that is not the last. */
export const UploadingReply = z.object({
  type: z.literal("uploading"),
  id: z.string(),
  uploadId: z.string(),
  bytes: z.number().int(),
});

/** `uploaded`: reply to the last `upload` piece: the file is stored; use `ref` in `submit`'s `task.file`. */
export const UploadedReply = z.object({
  type: z.literal("uploaded"),
  id: z.string(),
  uploadId: z.string(),
  ref: z.string(),
  bytes: z.number().int(),
});

/** `chunk`: a piece of a downloaded object, in order; `last: true` ends it. */
export const ChunkReply = z.object({
  type: z.literal("chunk"),
  id: z.string(),
  seq: z.number().int().nonnegative(),
  data: z.string(),
  last: z.boolean(),
});

/** Every frame a server may send. */
export const Reply = z.discriminatedUnion("type", [
  UploadingReply,
  UploadedReply,
  ChunkReply,
  WelcomeReply,
  AcceptedReply,
  AcceptedManyReply,
  ResultPush,
  TaskReply,
  PongReply,
  ErrorReply,
  CancelledReply,
  WatchingReply,
  TasksReply,
  WorkersReply,
  DlqReply,
]);

/** A frame a server sends. */
export type Reply = z.output<typeof Reply>;

/** A `result` push. */
export type ResultPush = z.output<typeof ResultPush>;

/** Encodes one frame as a line, `\n` included. */
export function encodeFrame(frame: Reply | Request | Record<string, unknown>): string {
  return JSON.stringify(frame) + "\n";
}

/** What decoding one line gives: a request, or an error with the request's id when it could be read. */
export type Decoded<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly id: string | null; readonly error: ColmenaError };

/** Limits applied while decoding a line. */
export interface DecodeLimits {
  /** Deepest nesting of arrays/objects accepted. */
  maxDepth: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses one line into JSON in two guarded steps: UTF-8 and depth, then `JSON.parse`.
 *
 * Invalid UTF-8 or JSON gives `INVALID_JSON`; nesting deeper than `limits.maxDepth` gives `TOO_DEEP`.
 */
export function parseJsonLine(bytes: Uint8Array, limits: DecodeLimits): Decoded<unknown> {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (cause) {
    return { ok: false, id: null, error: new ColmenaError("INVALID_JSON", { cause }) };
  }
  if (exceedsJsonDepth(text, limits.maxDepth)) {
    return {
      ok: false,
      id: null,
      error: new ColmenaError("TOO_DEEP", {
        message: `El JSON está anidado a más de ${limits.maxDepth} niveles`,
      }),
    };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (cause) {
    return { ok: false, id: null, error: new ColmenaError("INVALID_JSON", { cause }) };
  }
}

/** Reads `id` from a parsed frame that may be invalid, when it is a usable request id. */
export function readRequestId(value: unknown): string | null {
  if (typeof value !== "object" || value === null) return null;
  const id = (value as { id?: unknown }).id;
  return requestId.safeParse(id).success ? id as string : null;
}

/** Turns zod issues into a short Spanish description: `campo: problema; …`. */
export function describeIssues(error: z.ZodError, max = 3): string {
  return error.issues.slice(0, max).map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join(".") : "(raíz)";
    return `${path}: ${issue.message}`;
  }).join("; ");
}

/** Decodes a request from a line: JSON, then the envelope (`INVALID_MESSAGE`). */
export function decodeRequest(bytes: Uint8Array, limits: DecodeLimits): Decoded<Request> {
  const json = parseJsonLine(bytes, limits);
  if (!json.ok) return json;
  const id = readRequestId(json.value);
  const parsed = Request.safeParse(json.value);
  if (!parsed.success) {
    const message = `${ERRORS.INVALID_MESSAGE.message}: ${describeIssues(parsed.error)}`;
    return {
      ok: false,
      id,
      error: new ColmenaError("INVALID_MESSAGE", { message, cause: parsed.error }),
    };
  }
  return { ok: true, value: parsed.data };
}
