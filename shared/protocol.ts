/**
 * The wire contract between clients and servers: NDJSON frames tagged by `type`.
 *
 * Each request a client sends carries a client-chosen `id`; the reply to it echoes that `id`. Results are
 * pushed later, unasked, on the connection that submitted the task, and carry the `taskId` instead.
 * Replies to one connection's requests come in the order the requests came, except `accepted`, which waits
 * for the broker's confirm while later requests are answered. `docs/protocol.md` is the prose form of this file.
 *
 * @module
 */
import { z } from "zod";
import { ColmenaError, ERROR_CODES, ERRORS } from "./errors.ts";
import { exceedsJsonDepth } from "./framing.ts";
import { isTaskType, TASKS, type TaskType } from "./tasks.ts";

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
});

/** `hello`: optional introduction; answered with `welcome`. */
export const HelloRequest = z.object({
  type: z.literal("hello"),
  id: requestId,
  client: ClientInfo.optional(),
  protocol: z.number().int().optional(),
});

/** `submit`: enqueue a task; answered with `accepted` once the broker has stored it, or `error`. */
export const SubmitRequest = z.object({
  type: z.literal("submit"),
  id: requestId,
  task: TaskSpec,
  options: SubmitOptions.optional(),
});

/** `status`: ask for a task by id; answered with `task` or `error` `NOT_FOUND`. */
export const StatusRequest = z.object({
  type: z.literal("status"),
  id: requestId,
  taskId: z.string().min(1).max(128),
});

/** `ping`: answered with `pong`. */
export const PingRequest = z.object({ type: z.literal("ping"), id: requestId });

/** Every frame a client may send. */
export const Request = z.discriminatedUnion("type", [
  HelloRequest,
  SubmitRequest,
  StatusRequest,
  PingRequest,
]);

/** A frame a client sends. */
export type Request = z.output<typeof Request>;

/** The wire shape of an error. */
export const WireErrorSchema = z.object({ code: z.enum(ERROR_CODES), message: z.string() });

/** `welcome`: reply to `hello`. */
export const WelcomeReply = z.object({
  type: z.literal("welcome"),
  id: z.string(),
  serverId: z.string(),
  protocol: z.number().int(),
  taskTypes: z.array(z.string()),
});

/** `accepted`: the task is stored by the broker and will run. */
export const AcceptedReply = z.object({
  type: z.literal("accepted"),
  id: z.string(),
  taskId: z.string(),
});

/** `result`: pushed to the submitting connection when a task ends. */
export const ResultPush = z.object({
  type: z.literal("result"),
  taskId: z.string(),
  taskType: z.string(),
  status: z.enum(["succeeded", "failed"]),
  output: z.unknown().optional(),
  error: WireErrorSchema.optional(),
  worker: z.string(),
  durationMs: z.number(),
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
  error: WireErrorSchema.optional(),
});

/** The record of a task. */
export type TaskView = z.output<typeof TaskView>;

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

/** Every frame a server may send. */
export const Reply = z.discriminatedUnion("type", [
  WelcomeReply,
  AcceptedReply,
  ResultPush,
  TaskReply,
  PongReply,
  ErrorReply,
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

/** A task whose payload has passed its type's schema. */
export interface ValidTask {
  readonly type: TaskType;
  readonly payload: unknown;
}

/** Validates a task against the catalogue: `UNKNOWN_TASK_TYPE`, then `INVALID_PAYLOAD`. */
export function validateTask(task: { type: string; payload: unknown }): Decoded<ValidTask> {
  if (!isTaskType(task.type)) {
    return {
      ok: false,
      id: null,
      error: new ColmenaError("UNKNOWN_TASK_TYPE", {
        message: `Tipo de tarea desconocido: "${task.type.slice(0, 64)}"`,
      }),
    };
  }
  const parsed = TASKS[task.type].input.safeParse(task.payload);
  if (!parsed.success) {
    return {
      ok: false,
      id: null,
      error: new ColmenaError("INVALID_PAYLOAD", {
        message: `Datos no válidos para "${task.type}": ${describeIssues(parsed.error)}`,
        cause: parsed.error,
      }),
    };
  }
  return { ok: true, value: { type: task.type, payload: parsed.data } };
}
