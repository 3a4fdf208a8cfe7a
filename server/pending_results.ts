/**
 * Read-your-results on one server. The result router pushes a result to its connection before the store's
 * write of it has committed (the broker keeps the result message until then, see `docs/storage.md`), so a
 * read right after the push could otherwise still find the task running. {@linkcode PendingResultsStore}
 * wraps the task store: it notes every `complete` until it settles, and a read of that task (`get`) waits for
 * it first; a read of many records (`list`, `matchIds`) waits for every result pending when it began. Other
 * servers reading a shared store (PostgreSQL) see the result once it has committed.
 *
 * A write that fails (the store went away mid-COMMIT) leaves its result message unacknowledged, so the broker
 * delivers it again and its copy is written later: until then, or {@linkcode REDELIVERY_WAIT_MS} at most, the
 * reads of that task keep waiting, instead of showing it running after its result was pushed.
 *
 * @module
 */
import type { WireError } from "../shared/errors.ts";
import type { CancelOutcome, NewTask, TaskPage, TaskQuery, TaskStore } from "../shared/ports.ts";
import type { TaskView } from "../shared/protocol.ts";
import type { ResultMessage, StartedNotice } from "../shared/queue_messages.ts";

/**
 * How long the reads of a task wait for the copy of a result whose write failed: the broker delivers it again
 * once the result channel is back (to this server, or to another that shares the queue).
 */
export const REDELIVERY_WAIT_MS = 30_000;

/** A task store whose reads wait for the results this server has asked it to record and it has not yet. */
export class PendingResultsStore implements TaskStore {
  readonly #store: TaskStore;
  /** Each task's latest `complete` not yet settled (fulfilled or not). */
  readonly #pending = new Map<string, Promise<void>>();
  /** Tasks whose `complete` failed, waiting for a later one to be written: wakes their readers. */
  readonly #awaitingCopy = new Map<string, () => void>();

  /** The wrapped store's, when it has it (a store only this server writes). */
  readonly takenKeys?: (owner: string, keys: readonly string[]) => Promise<Set<string>>;

  /** Wraps `store`; every write and read goes to it. */
  constructor(store: TaskStore) {
    this.#store = store;
    if (store.takenKeys !== undefined) this.takenKeys = store.takenKeys.bind(store);
  }

  get createCompletesOrphans(): boolean {
    return this.#store.createCompletesOrphans ?? false;
  }

  get shared(): boolean {
    return this.#store.shared ?? false;
  }

  /** How many tasks have a `complete` not yet settled. */
  get pending(): number {
    return this.#pending.size;
  }

  create(task: NewTask): Promise<{ taskId: string; created: boolean }> {
    return this.#store.create(task);
  }

  createMany(tasks: readonly NewTask[]): Promise<{ taskId: string; created: boolean }[]> {
    return this.#store.createMany(tasks);
  }

  markStarted(notice: StartedNotice): Promise<void> {
    return this.#store.markStarted(notice);
  }

  markRetrying(taskId: string, error: WireError): Promise<void> {
    return this.#store.markRetrying(taskId, error);
  }

  complete(result: ResultMessage): Promise<boolean> {
    const written = this.#store.complete(result);
    const taskId = result.taskId;
    const settled = written.then(() => this.#copyWritten(taskId), () => this.#awaitCopy(taskId));
    this.#pending.set(taskId, settled);
    settled.then(() => {
      if (this.#pending.get(taskId) === settled) this.#pending.delete(taskId);
    });
    return written;
  }

  cancel(taskId: string): Promise<CancelOutcome> {
    return this.#store.cancel(taskId);
  }

  reopen(taskId: string): Promise<void> {
    return this.#store.reopen(taskId);
  }

  markPublished(taskId: string): Promise<void> {
    return this.#store.markPublished(taskId);
  }

  markPublishedMany(taskIds: readonly string[]): Promise<void> {
    return this.#store.markPublishedMany(taskIds);
  }

  published(taskId: string): Promise<boolean> {
    return this.#store.published(taskId);
  }

  remove(taskId: string): Promise<void> {
    return this.#store.remove(taskId);
  }

  get(taskId: string): Promise<TaskView | undefined> {
    const pending = this.#pending.get(taskId);
    if (pending === undefined) return this.#store.get(taskId);
    return pending.then(() => this.#store.get(taskId));
  }

  submission(taskId: string): Promise<NewTask | undefined> {
    return this.#store.submission(taskId);
  }

  list(query: TaskQuery): Promise<TaskPage> {
    return this.#afterPending(() => this.#store.list(query));
  }

  matchIds(prefix: string, limit: number): Promise<string[]> {
    return this.#afterPending(() => this.#store.matchIds(prefix, limit));
  }

  prune(before: string, limit: number): Promise<{ removed: number; blobKeys: string[] }> {
    return this.#store.prune(before, limit);
  }

  filesInUse(refs: readonly string[]): Promise<Set<string>> {
    return this.#store.filesInUse(refs);
  }

  close(): Promise<void> {
    return this.#store.close();
  }

  /** Waits for a later `complete` of `taskId` to be written, or {@linkcode REDELIVERY_WAIT_MS}. */
  #awaitCopy(taskId: string): Promise<void> {
    return new Promise((resolve) => {
      const earlier = this.#awaitingCopy.get(taskId);
      const wake = () => {
        clearTimeout(timer);
        if (this.#awaitingCopy.get(taskId) === wake) this.#awaitingCopy.delete(taskId);
        earlier?.();
        resolve();
      };
      const timer = setTimeout(wake, REDELIVERY_WAIT_MS);
      Deno.unrefTimer(timer);
      this.#awaitingCopy.set(taskId, wake);
    });
  }

  /** A `complete` of `taskId` was written: the readers waiting since an earlier one failed go on. */
  #copyWritten(taskId: string): void {
    this.#awaitingCopy.get(taskId)?.();
  }

  /** Runs `read` once every result pending now has settled (at once when none is). */
  #afterPending<T>(read: () => Promise<T>): Promise<T> {
    if (this.#pending.size === 0) return read();
    return Promise.all(this.#pending.values()).then(read);
  }
}
