/**
 * The messages that travel through RabbitMQ between servers and workers.
 *
 * `task_queue` carries one {@linkcode TaskMessage} per message. `result_queue` carries
 * {@linkcode ResultBatch}es: a worker packs every result (and every "started" notice) of one turn into one
 * persistent message, so the broker handles one message per batch, not one per task.
 *
 * @module
 */
import { z } from "zod";
import { CLIENT_KINDS, WireErrorSchema } from "./protocol.ts";

/** Version of the broker message format. */
export const QUEUE_FORMAT = 1;

/** A task as it waits in `task_queue`. */
export const TaskMessage = z.object({
  v: z.literal(QUEUE_FORMAT),
  taskId: z.string(),
  type: z.string(),
  payload: z.unknown(),
  client: z.object({ name: z.string(), kind: z.enum(CLIENT_KINDS) }),
  /** The id of the server that accepted it: its results are pushed through that server. */
  origin: z.string(),
  priority: z.number().int().min(0).max(9),
  timeoutMs: z.number().int().positive(),
  submittedAt: z.string(),
  attempt: z.number().int().positive(),
});

/** A task as it waits in `task_queue`. */
export type TaskMessage = z.output<typeof TaskMessage>;

/** The end of one task, as a worker reports it. */
export const ResultMessage = z.object({
  taskId: z.string(),
  taskType: z.string(),
  origin: z.string(),
  status: z.enum(["succeeded", "failed"]),
  output: z.unknown().optional(),
  error: WireErrorSchema.optional(),
  worker: z.string(),
  durationMs: z.number(),
  startedAt: z.string(),
  finishedAt: z.string(),
  attempt: z.number().int().positive(),
});

/** The end of one task, as a worker reports it. */
export type ResultMessage = z.output<typeof ResultMessage>;

/** The start of one task, as a worker reports it. */
export const StartedNotice = z.object({
  taskId: z.string(),
  origin: z.string(),
  worker: z.string(),
  startedAt: z.string(),
  /** 1 for the first attempt. */
  attempt: z.number().int().positive().default(1),
});

/** The start of one task, as a worker reports it. */
export type StartedNotice = z.output<typeof StartedNotice>;

/** What one `result_queue` message carries. */
export const ResultBatch = z.object({
  v: z.literal(QUEUE_FORMAT),
  started: z.array(StartedNotice).default([]),
  results: z.array(ResultMessage).default([]),
});

/** What one `result_queue` message carries. */
export type ResultBatch = z.output<typeof ResultBatch>;
