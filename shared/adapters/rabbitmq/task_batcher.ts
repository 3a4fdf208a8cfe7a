/**
 * Packs the tasks a server publishes in one event-loop turn into as few broker messages as the caps allow:
 * one group per (type, priority), flushed at the end of the turn, one confirmed message per chunk of a group.
 * Each task's caller gets its chunk's confirm, so a failed confirm fails every task of that chunk, each as it
 * would fail alone.
 *
 * "The end of the turn" depends on the load. While a message of this batcher awaits its confirm, a group is
 * flushed with `setImmediate`, so that it also takes the tasks of the other I/O callbacks of this turn. With
 * none awaited (no load), it is flushed at `process.nextTick`, once the current callback and its microtasks
 * are done: a lone task does not wait a turn (nor for what that turn runs first, such as a store's fsync),
 * and the tasks of one callback (a `submit_many`) still go together.
 *
 * @module
 */
import process from "node:process";
import { setImmediate } from "node:timers";
import { MAX_BULK_TASKS, type TaskMessage } from "../../queue_messages.ts";
import { taskJson } from "./task_route.ts";

/**
 * Most characters of task JSON packed into one message (256 KiB for ASCII text); a larger task still goes,
 * alone.
 */
export const MAX_BATCH_CHARS = 256 * 1024;

/** A task as the batcher hands it to be published, with its JSON text. */
export interface BatchedTask {
  readonly task: TaskMessage;
  readonly json: string;
}

/** Options of {@linkcode TaskBatcher}. */
export interface TaskBatcherOptions {
  /** Most tasks in one message; 1 publishes every task on its own, at once. */
  readonly maxTasks: number;
  /** Most characters of task JSON in one message. @defaultValue {@linkcode MAX_BATCH_CHARS} */
  readonly maxChars?: number;
  /** A further cap for the tasks of one type (the workers' fairness), asked once per type and turn. */
  readonly limitFor?: (type: string) => number;
  /**
   * The cap for the bulk tasks of one type (those of a `submit_many`), asked once per type and turn: 1 when
   * some worker of the type cannot read batches. @defaultValue {@linkcode MAX_BULK_TASKS}
   */
  readonly bulkLimitFor?: (type: string) => number;
  /**
   * Publishes the tasks (one or more) as one message, marked as a bulk when `bulk`; resolves on the
   * broker's confirm.
   */
  readonly publish: (tasks: readonly BatchedTask[], bulk: boolean) => Promise<void>;
}

/** Told the outcome of each task of an {@linkcode TaskBatcher.addMany} call: no error once confirmed. */
export type TaskSettled = (index: number, error?: unknown) => void;

/** Who waits for a task's confirm: one lone task's promise, or a whole `addMany` call. */
interface _Waiter {
  settle(index: number, error?: unknown): void;
}

interface _Pending extends BatchedTask {
  readonly waiter: _Waiter;
  /** The task's place in its `addMany` call (0 for a lone task). */
  readonly index: number;
}

/** The waiter of a lone task: its promise. */
function _promiseWaiter(): { waiter: _Waiter; promise: Promise<void> } {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  return {
    waiter: { settle: (_index, error) => error === undefined ? resolve() : reject(error) },
    promise,
  };
}

interface _Group {
  readonly cap: number;
  readonly bulk: boolean;
  readonly items: _Pending[];
}

/** Groups tasks per turn and publishes each group in chunks; see the module doc. */
export class TaskBatcher {
  readonly #options: TaskBatcherOptions;
  readonly #maxChars: number;
  #groups = new Map<string, _Group>();
  /**
   * The group key of each (type, priority, bulk), kept: a key built anew for every task is a new string,
   * which each map lookup must first flatten and hash.
   */
  readonly #keys = new Map<string, Map<number, string>>();
  #scheduled = false;
  /** Messages published and not yet confirmed (or failed). */
  #unconfirmed = 0;

  constructor(options: TaskBatcherOptions) {
    if (!Number.isInteger(options.maxTasks) || options.maxTasks < 1) {
      throw new RangeError(
        `Cannot batch tasks: maxTasks "${options.maxTasks}" is not a positive integer`,
      );
    }
    this.#options = options;
    this.#maxChars = options.maxChars ?? MAX_BATCH_CHARS;
  }

  /**
   * Publishes a task with the others of its type and priority given in this turn; resolves or rejects with
   * the confirm of the message that carried it. A task whose cap is 1 is published at once, alone. A `bulk`
   * task (one of a `submit_many`) goes with the other bulk tasks of its type and priority, up to the bulk
   * cap instead of the fairness cap: the worker that takes their message shares it out (see `BULK_HEADER`).
   */
  add(task: TaskMessage, options: { bulk?: boolean } = {}): Promise<void> {
    const group = this.#groupOf(task, options.bulk === true);
    if (group === undefined) return this.#options.publish([{ task, json: taskJson(task) }], false);
    const { waiter, promise } = _promiseWaiter();
    group.items.push({ task, json: taskJson(task), waiter, index: 0 });
    this.#schedule();
    return promise;
  }

  /**
   * {@linkcode add} for many tasks at once, without a promise per task: `settled` is told each task's outcome
   * (by its index in `tasks`), once, as the confirm of the message that carried it comes.
   */
  addMany(
    tasks: readonly TaskMessage[],
    options: { bulk?: boolean; settled: TaskSettled },
  ): void {
    const bulk = options.bulk === true;
    const waiter: _Waiter = { settle: options.settled };
    for (let index = 0; index < tasks.length; index++) {
      const task = tasks[index]!;
      const group = this.#groupOf(task, bulk);
      if (group === undefined) {
        this.#options.publish([{ task, json: taskJson(task) }], false).then(
          () => options.settled(index),
          (err: unknown) => options.settled(index, err ?? new Error("Publish failed")),
        );
        continue;
      }
      group.items.push({ task, json: taskJson(task), waiter, index });
    }
    if (tasks.length > 0) this.#schedule();
  }

  /** The group of this turn a task joins; `undefined` when its cap is 1 (it goes alone, at once). */
  #groupOf(task: TaskMessage, bulk: boolean): _Group | undefined {
    const key = this.#groupKey(task.type, task.priority, bulk);
    let group = this.#groups.get(key);
    if (group === undefined) {
      const cap = bulk
        ? Math.max(
          1,
          Math.min(MAX_BULK_TASKS, Math.floor(this.#options.bulkLimitFor?.(task.type) ?? Infinity)),
        )
        : Math.max(
          1,
          Math.min(
            this.#options.maxTasks,
            Math.floor(this.#options.limitFor?.(task.type) ?? this.#options.maxTasks),
          ),
        );
      if (cap === 1) return undefined;
      group = { cap, bulk, items: [] };
      this.#groups.set(key, group);
    }
    return group;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    if (this.#unconfirmed === 0) process.nextTick(() => this.flush());
    else setImmediate(() => this.flush());
  }

  #groupKey(type: string, priority: number, bulk: boolean): string {
    let byPriority = this.#keys.get(type);
    if (byPriority === undefined) {
      byPriority = new Map();
      this.#keys.set(type, byPriority);
    }
    // Bulk groups under the negative priorities (a task's priority is never negative).
    const slot = bulk ? -1 - priority : priority;
    let key = byPriority.get(slot);
    if (key === undefined) {
      key = `${priority}\n${type}${bulk ? "\nbulk" : ""}`;
      byPriority.set(slot, key);
    }
    return key;
  }

  /** Publishes every group now; normally called at the end of the turn. */
  flush(): void {
    this.#scheduled = false;
    const groups = this.#groups;
    this.#groups = new Map();
    for (const group of groups.values()) {
      let chunk: _Pending[] = [];
      let chars = 0;
      for (const item of group.items) {
        if (
          chunk.length > 0 &&
          (chunk.length >= group.cap || chars + item.json.length > this.#maxChars)
        ) {
          this.#send(chunk, group.bulk);
          chunk = [];
          chars = 0;
        }
        chunk.push(item);
        chars += item.json.length;
      }
      if (chunk.length > 0) this.#send(chunk, group.bulk);
    }
  }

  #send(chunk: readonly _Pending[], bulk: boolean): void {
    let sent: Promise<void>;
    this.#unconfirmed++;
    try {
      sent = this.#options.publish(chunk, bulk && chunk.length > 1);
    } catch (err) {
      sent = Promise.reject(err);
    }
    sent.then(
      () => {
        this.#unconfirmed--;
        for (const item of chunk) item.waiter.settle(item.index);
      },
      (err: unknown) => {
        this.#unconfirmed--;
        for (const item of chunk) {
          item.waiter.settle(item.index, err ?? new Error("Publish failed"));
        }
      },
    );
  }
}
