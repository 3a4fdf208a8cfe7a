/**
 * Every object key colmena writes, and how long each object lives: the one place that builds or recognises
 * a key. The server, the worker and retention all go through it.
 *
 * | kind    | key                     | written by                       | deleted by                          |
 * | ------- | ----------------------- | -------------------------------- | ----------------------------------- |
 * | payload | `tasks/<taskId>/payload` | the server, at submit            | the server (submit failed or was a repeat), else retention with its record |
 * | output  | `tasks/<taskId>/output`  | the worker, when the task ends   | retention, with its record          |
 * | upload  | `uploads/<owner>/<uploadId>` | the server, on `upload`     | retention: with the last record that reads it, or when none does |
 *
 * An upload's key records its owner: `<owner>` is {@linkcode uploadOwnerTag} of the principal that uploaded
 * it, so that only that principal (or an admin) may name it in a submit.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** What a task id or an upload id looks like inside a key: 36 characters of a `crypto.randomUUID()`. */
const ID = "[0-9a-f-]{36}";

/** The prefix of every uploaded file's key (`uploads/<owner>/<uploadId>`); retention lists objects under it. */
export const UPLOADS_PREFIX = "uploads/";

/** Recognises a payload key built by {@linkcode payloadKey}. */
export const PAYLOAD_KEY: RegExp = new RegExp(`^tasks/${ID}/payload$`);

/** Recognises an output key built by {@linkcode outputKey}: the only objects a client may `download`. */
export const OUTPUT_KEY: RegExp = new RegExp(`^tasks/${ID}/output$`);

/** Recognises an upload key built by {@linkcode uploadKey}: the only objects a submit may name as its file. */
export const UPLOAD_KEY: RegExp = new RegExp(`^${UPLOADS_PREFIX}([0-9a-f]{32})/${ID}$`);

/**
 * The owner part of an upload's key: the first 32 hexadecimal digits of the SHA-256 of the principal's
 * name (names may hold characters a key should not).
 */
export function uploadOwnerTag(owner: string): string {
  return createHash("sha256").update(owner, "utf8").digest("hex").slice(0, 32);
}

/** Whether `ref` is an upload key owned by `owner`. */
export function isUploadOf(ref: string, owner: string): boolean {
  return UPLOAD_KEY.exec(ref)?.[1] === uploadOwnerTag(owner);
}

/** The task id of an output key, or `undefined` when `ref` is not one. */
export function outputTaskId(ref: string): string | undefined {
  return OUTPUT_KEY.test(ref) ? ref.slice("tasks/".length, -"/output".length) : undefined;
}

/**
 * The key of a task's payload too large for the queue (claim check; the task message names it as
 * `payloadRef`).
 *
 * Written by the server before it records the task. Deleted by the server when the submit fails (the record
 * is removed) or turns out to repeat an idempotency key (no record holds it); otherwise it lives as long as
 * its record and retention (`pruneOnce`) deletes both.
 */
export function payloadKey(taskId: string): string {
  return `tasks/${taskId}/payload`;
}

/**
 * The key of a task's output too large for a result message (the result names it as `outputRef`, and
 * clients fetch it with `download`).
 *
 * Written by the worker when the task ends; it lives as long as its record, and retention (`pruneOnce`)
 * deletes both. A worker that writes it and dies before reporting leaves it to be overwritten by the next
 * attempt under the same key.
 */
export function outputKey(taskId: string): string {
  return `tasks/${taskId}/output`;
}

/**
 * The key of a file uploaded with `upload` (the `uploaded` reply names it as `ref`; a submit's `task.file.ref`
 * points at it, and the record keeps it as `fileRef`).
 *
 * Written by the server, piece by piece; an upload cut short is aborted and not kept. Several tasks may read
 * one file: retention deletes it with the last record that reads it, and deletes files no record reads once
 * they are older than the retention.
 */
export function uploadKey(uploadId: string, owner: string): string {
  return `${UPLOADS_PREFIX}${uploadOwnerTag(owner)}/${uploadId}`;
}
