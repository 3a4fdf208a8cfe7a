/**
 * The dead-letter queue as operators use it: the headers a task that failed for good carries, reading
 * entries in place, and moving tasks back to the queue of their type. A batch message that lands there (one
 * of its tasks was never read, or the broker dead-lettered it whole) is listed task by task, and requeued
 * task by task.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import type { ChannelModel } from "amqplib";
import type { WireError } from "../../errors.ts";
import type { DeadLetter } from "../../ports.ts";
import { type TaskMessage, TASKS_HEADER } from "../../queue_messages.ts";
import { deadLetterQueue } from "./names.ts";
import { declareTypeQueues } from "./topology.ts";
import type { QueueType } from "./names.ts";
import { confirmPublish, type Outgoing } from "./session.ts";
import { type MessageSigner, SIGNATURE_HEADER, signed, verified } from "./signing.ts";
import { readTasks, taskTo, taskToItsQueue } from "./task_route.ts";

/** Header names on dead-lettered tasks. */
const DEAD_HEADERS = {
  code: "x-colmena-error-code",
  message: "x-colmena-error-message",
  at: "x-colmena-dead-at",
} as const;

/** A task that failed for good, addressed to the dead-letter queue with its error in the headers. */
export function deadLetterTo(taskQueue: string, task: TaskMessage, error: WireError): Outgoing {
  const message = taskTo(deadLetterQueue(taskQueue), task);
  return {
    ...message,
    props: {
      ...message.props,
      headers: {
        [DEAD_HEADERS.code]: error.code,
        [DEAD_HEADERS.message]: error.message,
        [DEAD_HEADERS.at]: new Date().toISOString(),
      },
    },
  };
}

/** The error shown for a dead letter whose signature is not valid (it is never requeued). */
const UNSIGNED = { code: "UNSIGNED", message: "Mensaje sin firma válida: no se reencola" } as const;

/** The entries of one dead-letter message: one per task (several for a batch), or one unreadable entry. */
function _toDeadLetters(
  msg: { content: Buffer; properties: { headers?: unknown; messageId?: unknown } },
  signer: MessageSigner | undefined,
): { entry: DeadLetter; task: TaskMessage | null }[] {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
  const genuine = verified(signer, "task", msg);
  const tasks: (TaskMessage | null)[] = (genuine ? readTasks(msg.content) : null) ?? [null];
  const code = headers[DEAD_HEADERS.code];
  const message = headers[DEAD_HEADERS.message];
  const at = headers[DEAD_HEADERS.at];
  return tasks.map((task) => ({
    task,
    entry: {
      taskId: task?.taskId ?? "(ilegible)",
      taskType: task?.type ?? "(ilegible)",
      attempt: task?.attempt ?? 0,
      maxAttempts: task?.maxAttempts ?? 0,
      client: task?.client ?? { name: "desconocido", kind: "cli" },
      submittedAt: task?.submittedAt ?? "",
      error: !genuine
        ? { ...UNSIGNED }
        : typeof code === "string"
        ? { code, message: typeof message === "string" ? message : "" }
        : null,
      deadAt: typeof at === "string" ? at : null,
    },
  }));
}

/** One task of a dead-lettered batch, back to the dead-letter queue on its own with the batch's headers. */
function _backToDeadLetters(
  taskQueue: string,
  task: TaskMessage,
  headers: Record<string, unknown>,
): Outgoing {
  const message = taskTo(deadLetterQueue(taskQueue), task);
  const { [SIGNATURE_HEADER]: _signature, [TASKS_HEADER]: _count, ...kept } = headers;
  return { ...message, props: { ...message.props, headers: kept } };
}

/** The first `limit` entries of the dead-letter queue, read on a channel of their own and left in place. */
export async function listDeadLetters(
  model: ChannelModel,
  options: { taskQueue: string; limit: number; signer?: MessageSigner | undefined },
): Promise<DeadLetter[]> {
  const ch = await model.createChannel();
  ch.on("error", () => {});
  const entries: DeadLetter[] = [];
  try {
    while (entries.length < options.limit) {
      const msg = await ch.get(deadLetterQueue(options.taskQueue), { noAck: false });
      if (msg === false) break;
      for (const { entry } of _toDeadLetters(msg, options.signer)) entries.push(entry);
    }
    entries.length = Math.min(entries.length, options.limit);
  } finally {
    // Closing the channel hands every message back, in its place.
    await ch.close().catch(() => {});
  }
  return entries;
}

/** What {@linkcode requeueDeadLetters} moves, and the hook it runs before each task. */
export interface RequeueOptions {
  readonly taskQueue: string;
  /** What the task queues are, as declared by servers and workers. @defaultValue `"classic"` */
  readonly queueType?: QueueType | undefined;
  readonly taskIds: readonly string[] | undefined;
  readonly limit: number;
  readonly beforePublish?: ((task: TaskMessage) => Promise<void>) | undefined;
  /** Checks each dead letter's signature (one without a valid one stays) and signs the copies. */
  readonly signer?: MessageSigner | undefined;
}

/**
 * Moves dead-lettered tasks back to the queue of their type, each acknowledged in the dead-letter queue only
 * after its copy is confirmed; see `ServerBroker.requeueDeadLetters`. The type's queue is declared first: a
 * message published to a queue that does not exist is dropped, and the task would be lost.
 *
 * It reads at most the messages the queue held when it started, and moves each task once: a task that
 * fails for good again while the request runs comes back to the end of the queue, and is left there.
 */
export async function requeueDeadLetters(
  model: ChannelModel,
  options: RequeueOptions,
): Promise<TaskMessage[]> {
  const { taskQueue, queueType, taskIds, limit, beforePublish, signer } = options;
  const ch = await model.createConfirmChannel();
  ch.on("error", () => {});
  const wanted = taskIds === undefined ? undefined : new Set(taskIds);
  const moved: TaskMessage[] = [];
  const movedIds = new Set<string>();
  const declared = new Set<string>();
  const queue = deadLetterQueue(taskQueue);
  try {
    // Messages requeued here that die again are appended after these: never read past them.
    const { messageCount } = await ch.checkQueue(queue);
    const scan = Math.min(messageCount, wanted === undefined ? limit : 100_000);
    const declare = async (type: string) => {
      if (declared.has(type)) return;
      await declareTypeQueues(ch, { taskQueue, types: [type], queueType });
      declared.add(type);
    };
    for (let i = 0; i < scan && moved.length < limit; i++) {
      const msg = await ch.get(queue, { noAck: false });
      if (msg === false) break;
      const tasks = _toDeadLetters(msg, signer).map((d) => d.task);
      const chosen: TaskMessage[] = [];
      const kept: TaskMessage[] = [];
      for (const task of tasks) {
        if (task === null) continue;
        const wantedNow = (wanted === undefined || wanted.has(task.taskId)) &&
          !movedIds.has(task.taskId) && moved.length + chosen.length < limit;
        (wantedNow ? chosen : kept).push(task);
      }
      if (chosen.length === 0) continue;
      const fresh = chosen.map((task): TaskMessage => ({ ...task, attempt: 1, deliveries: 1 }));
      for (const task of fresh) await beforePublish?.(task);
      for (const task of fresh) await declare(task.type);
      // A batch leaves the dead-letter queue only once each of its tasks is published on its own: those
      // moved to their queue, the others back to the dead-letter queue.
      const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
      await Promise.all([
        ...fresh.map((task) =>
          confirmPublish(ch, signed(signer, "task", taskToItsQueue(taskQueue, task)))
        ),
        ...kept.map((task) =>
          confirmPublish(ch, signed(signer, "task", _backToDeadLetters(taskQueue, task, headers)))
        ),
      ]);
      ch.ack(msg);
      for (const task of fresh) {
        moved.push(task);
        movedIds.add(task.taskId);
      }
      if (wanted !== undefined && moved.length === wanted.size) break;
    }
  } finally {
    await ch.close().catch(() => {});
  }
  return moved;
}
