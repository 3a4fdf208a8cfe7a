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
  // Each record is reopened before its task is republished, so the new attempt's result is not taken for a
  // duplicate; only tasks really found in the dead-letter queue are touched.
  const moved = await broker.requeueDeadLetters(
    request.taskIds,
    request.limit,
    (task) => store.reopen(task.taskId),
  );
  client.send({ type: "dlq", id: request.id, requeued: moved.map((t) => t.taskId) });
}
