/**
 * How a task message travels: to the queue of its type, persistent, with its priority and id; alone, or
 * with others of its type and priority in one batch message.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import {
  BULK_HEADER,
  QUEUE_FORMAT,
  TaskBatchMessage,
  TaskMessage,
  TASKS_HEADER,
} from "../../queue_messages.ts";
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

/**
 * Tasks of one type and priority in one message to the queue of their type, from their JSON texts (see
 * {@linkcode taskJson}); a single task goes as a plain task message. The message id is the first task's.
 * With `bulk`, a batch is marked with {@linkcode BULK_HEADER}.
 */
export function tasksToTheirQueue(
  taskQueue: string,
  tasks: readonly { task: TaskMessage; json: string }[],
  options: { bulk?: boolean } = {},
): Outgoing {
  const first = tasks[0];
  if (first === undefined) throw new RangeError("Cannot publish a batch: no task given");
  if (tasks.length === 1) {
    return {
      exchange: "",
      routingKey: typeQueue(taskQueue, first.task.type),
      body: Buffer.from(first.json),
      props: taskProps(first.task),
    };
  }
  const body = `{"v":${QUEUE_FORMAT},"tasks":[${tasks.map((t) => t.json).join(",")}]}`;
  return {
    exchange: "",
    routingKey: typeQueue(taskQueue, first.task.type),
    body: Buffer.from(body),
    props: {
      ...taskProps(first.task),
      headers: options.bulk === true
        ? { [TASKS_HEADER]: tasks.length, [BULK_HEADER]: true }
        : { [TASKS_HEADER]: tasks.length },
    },
  };
}

/** A task's JSON text, as it travels. */
export function taskJson(task: TaskMessage): string {
  return JSON.stringify(task);
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

/**
 * Reads the tasks of a message of a task queue: one for a task message, several for a batch message, or
 * `null` when the body is neither (a batch with one unreadable task is unreadable as a whole).
 */
export function readTasks(content: Buffer): TaskMessage[] | null {
  let json: unknown;
  try {
    json = JSON.parse(content.toString("utf8"));
  } catch {
    return null;
  }
  if (typeof json === "object" && json !== null && "tasks" in json) {
    const batch = TaskBatchMessage.safeParse(json);
    return batch.success ? batch.data.tasks : null;
  }
  const task = TaskMessage.safeParse(json);
  return task.success ? [task.data] : null;
}
