/**
 * How a task message travels: to the queue of its type, persistent, with its priority and id.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { TaskMessage } from "../../queue_messages.ts";
import { typeQueue } from "./names.ts";
import type { Outgoing } from "./session.ts";

/** The AMQP properties of a task message. */
export function taskProps(task: TaskMessage): {
  persistent: true;
  priority: number;
  messageId: string;
  contentType: string;
} {
  return {
    persistent: true,
    priority: task.priority,
    messageId: task.taskId,
    contentType: "application/json",
  };
}

/** A task addressed to `queue` (through the default exchange). */
export function taskTo(queue: string, task: TaskMessage): Outgoing {
  return {
    exchange: "",
    routingKey: queue,
    body: Buffer.from(JSON.stringify(task)),
    props: taskProps(task),
  };
}

/** A task addressed to the queue of its type. */
export function taskToItsQueue(taskQueue: string, task: TaskMessage): Outgoing {
  return taskTo(typeQueue(taskQueue, task.type), task);
}

/** Reads a task message's body, or `null` when it is not one. */
export function readTask(content: Buffer): TaskMessage | null {
  try {
    const parsed = TaskMessage.safeParse(JSON.parse(content.toString("utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
