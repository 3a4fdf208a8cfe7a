/**
 * A task to submit as one value, `{ type, payload }`, typed per task type, and the calls that submit it.
 *
 * @module
 */
import type { SubmitOptions } from "../shared/protocol.ts";
import type { TaskInput, TaskType } from "../shared/tasks.ts";
import type { TaskClient, TaskResult } from "./task_client.ts";

/** Any JSON value, as an echo message. */
export type JsonValue = TaskInput<"echo">["message"];

/** A task ready to submit: its type and a payload of that type. */
export type TaskRequest = { [T in TaskType]: { readonly type: T; readonly payload: TaskInput<T> } }[
  TaskType
];

/** Submits a {@linkcode TaskRequest}; resolves with the task id. */
export function submitTask(
  client: TaskClient,
  request: TaskRequest,
  options?: SubmitOptions,
): Promise<string> {
  switch (request.type) {
    case "text":
      return client.submit(request.type, request.payload, options);
    case "numbers":
      return client.submit(request.type, request.payload, options);
    case "echo":
      return client.submit(request.type, request.payload, options);
    case "sleep":
      return client.submit(request.type, request.payload, options);
    case "hash":
      return client.submit(request.type, request.payload, options);
  }
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
