/**
 * The task and result records the store benchmarks (`bench/sqlite_store.ts`, `bench/postgres_store.ts`)
 * write: the same small `text` task, so that both measure the same rows.
 *
 * @module
 */
import type { NewTask } from "../shared/ports.ts";
import type { ResultMessage } from "../shared/queue_messages.ts";

/** A small `text` task submitted at `now`. */
export function benchTask(taskId: string, now: string): NewTask {
  return {
    taskId,
    taskType: "text",
    priority: 1,
    client: { name: "bench-1", kind: "cli" },
    submittedAt: now,
    origin: "s1",
    payload: { text: "hola mundo", op: "upper" },
    maxAttempts: 3,
    timeoutMs: 30_000,
    owner: "bench-1",
  };
}

/** The succeeded result of {@linkcode benchTask}, finished at `now`. */
export function benchResult(taskId: string, now: string): ResultMessage {
  return {
    taskId,
    taskType: "text",
    origin: "s1",
    status: "succeeded",
    output: { text: "HOLA MUNDO" },
    worker: "w1",
    durationMs: 0.05,
    startedAt: now,
    finishedAt: now,
    attempt: 1,
  };
}
