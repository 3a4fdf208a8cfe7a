/**
 * `dlq`: listing the dead-letter queue, and requeueing tasks from it with their records reopened.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import type { TaskStore } from "../shared/ports.ts";
import type { Request } from "../shared/protocol.ts";
import type { ServerBroker } from "../shared/ports.ts";
import type { ClientConnection } from "./connection.ts";

/** Answers `dlq`: the dead letters (`list`), or the ids of the tasks requeued (`requeue`). */
export async function deadLetters(
  client: ClientConnection,
  request: Extract<Request, { type: "dlq" }>,
  { store, broker }: { store: TaskStore; broker: ServerBroker | undefined },
): Promise<void> {
  if (broker === undefined || !broker.connected) {
    return client.sendError(request.id, new ColmenaError("BROKER_UNAVAILABLE"));
  }
  if (request.action === "list") {
    const entries = await broker.listDeadLetters(request.limit);
    client.send({ type: "dlq", id: request.id, entries });
    return;
  }
  const requeued = await requeueFromDeadLetters(request.taskIds, request.limit, { store, broker });
  client.send({ type: "dlq", id: request.id, requeued });
}

/**
 * Moves dead-lettered tasks back to their queues (those with `taskIds`, or the first `limit`), each record
 * reopened first; returns the ids moved. Rejects with `BROKER_UNAVAILABLE` while disconnected. The `dlq`
 * request and the dashboard's requeue both come here.
 */
export async function requeueFromDeadLetters(
  taskIds: readonly string[] | undefined,
  limit: number,
  { store, broker }: { store: TaskStore; broker: ServerBroker | undefined },
): Promise<string[]> {
  if (broker === undefined || !broker.connected) throw new ColmenaError("BROKER_UNAVAILABLE");
  // Each record is reopened before its task is republished, so the new attempt's result is not taken for a
  // duplicate; only tasks really found in the dead-letter queue are touched.
  const moved = await broker.requeueDeadLetters(
    taskIds,
    limit,
    (task) => store.reopen(task.taskId),
  );
  return moved.map((t) => t.taskId);
}
