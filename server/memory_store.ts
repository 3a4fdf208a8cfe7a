/**
 * The in-memory task store: records live as long as the server process, bounded in number.
 *
 * @module
 */
import type { TaskStore } from "../shared/ports.ts";
import type { TaskView } from "../shared/protocol.ts";
import type { ResultMessage, StartedNotice } from "../shared/queue_messages.ts";

function isFinal(view: TaskView): boolean {
  return view.status === "succeeded" || view.status === "failed";
}

/**
 * Keeps task records in a map. When it holds more than `maxTasks`, the oldest finished records are
 * forgotten first; unfinished ones are never dropped.
 */
export class MemoryTaskStore implements TaskStore {
  readonly #tasks = new Map<string, TaskView>();
  readonly #maxTasks: number;

  constructor(maxTasks = 200_000) {
    this.#maxTasks = maxTasks;
  }

  /** How many records are held. */
  get size(): number {
    return this.#tasks.size;
  }

  create(view: TaskView): void {
    this.#tasks.set(view.taskId, view);
    if (this.#tasks.size > this.#maxTasks) this.#evict();
  }

  markStarted(notice: StartedNotice): void {
    const view = this.#tasks.get(notice.taskId);
    if (view === undefined || isFinal(view)) return;
    view.status = "running";
    view.worker = notice.worker;
    view.startedAt = notice.startedAt;
  }

  complete(result: ResultMessage): boolean {
    const view = this.#tasks.get(result.taskId);
    if (view !== undefined && isFinal(view)) return false;
    const base: TaskView = view ?? {
      taskId: result.taskId,
      taskType: result.taskType,
      status: "queued",
      priority: 0,
      client: { name: "desconocido", kind: "cli" },
      submittedAt: result.startedAt,
    };
    base.status = result.status;
    base.worker = result.worker;
    base.startedAt = result.startedAt;
    base.finishedAt = result.finishedAt;
    base.durationMs = result.durationMs;
    if (result.output !== undefined) base.output = result.output;
    if (result.error !== undefined) base.error = result.error;
    if (view === undefined) this.create(base);
    return true;
  }

  remove(taskId: string): void {
    this.#tasks.delete(taskId);
  }

  get(taskId: string): TaskView | undefined {
    return this.#tasks.get(taskId);
  }

  #evict(): void {
    // Evict 1 % more than needed, so that a full store does not scan on every insert.
    const excess = this.#tasks.size - this.#maxTasks + Math.ceil(this.#maxTasks / 100);
    let removed = 0;
    for (const [taskId, view] of this.#tasks) {
      if (removed >= excess) break;
      if (isFinal(view)) {
        this.#tasks.delete(taskId);
        removed++;
      }
    }
  }
}
