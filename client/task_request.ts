/**
 * A task to submit as one value, `{ type, payload }`, of any type in the catalogue, and the calls that
 * submit it. The server validates the payload against the type's schema.
 *
 * @module
 */
import type { SubmitOptions } from "../shared/protocol.ts";
import type { JsonValue } from "../shared/task_args.ts";
import type { AnyTaskRequest } from "./args.ts";
import type { TaskClient, TaskResult } from "./task_client.ts";

export type { JsonValue };

/** A task ready to submit: its type and its payload. */
export type TaskRequest = AnyTaskRequest;

/** Submits a {@linkcode TaskRequest}; resolves with the task id. */
export function submitTask(
  client: TaskClient,
  request: TaskRequest,
  options?: SubmitOptions,
): Promise<string> {
  return client.submitUnchecked(request.type, request.payload, options);
}

/** A task's result and the milliseconds from its submit to its result. */
export interface TimedResult {
  readonly result: TaskResult;
  readonly roundTripMs: number;
}

/** Submits a {@linkcode TaskRequest} and waits for its result, timing the round trip. */
export async function runTaskRequest(
  client: TaskClient,
  request: TaskRequest,
  options?: SubmitOptions,
): Promise<TimedResult> {
  const start = performance.now();
  const taskId = await submitTask(client, request, options);
  const result = await client.result(taskId);
  return { result, roundTripMs: performance.now() - start };
}
