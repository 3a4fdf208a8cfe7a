/**
 * The in-memory task store: records live as long as the server process, bounded in number.
 *
 * @module
 */
import { ColmenaError, type WireError } from "../../shared/errors.ts";
import type { CancelOutcome, NewTask, TaskPage, TaskQuery, TaskStore } from "../../shared/ports.ts";
import type { TaskView } from "../../shared/protocol.ts";
import type { ResultMessage, StartedNotice } from "../../shared/queue_messages.ts";
import {
  applyResult,
  checkListLimit,
  checkPruneLimit,
  decodeCursor,
  encodeCursor,
  isFinalStatus,
  isTaskIdPrefix,
  newTaskRecord,
  orphanRecord,
  storableText,
  type TaskRecord,
  toMillis,
  toSubmission,
  toTaskView,
} from "./records.ts";

function idempotencyIndex(owner: string, key: string): string {
  return JSON.stringify([owner, key]);
}

/** Newest first: by submit time, then by task id. */
function newestFirst(a: TaskRecord, b: TaskRecord): number {
  if (a.submittedAt !== b.submittedAt) return b.submittedAt - a.submittedAt;
  return a.taskId < b.taskId ? 1 : a.taskId > b.taskId ? -1 : 0;
}

/**
 * Keeps task records in a map, with the same semantics as the durable stores. When it holds more than
 * `maxTasks`, the oldest final records (in insertion order) are forgotten first; unfinished ones never are.
 */
export class MemoryTaskStore implements TaskStore {
  readonly #tasks = new Map<string, TaskRecord>();
  readonly #byIdempotencyKey = new Map<string, string>();
  readonly #maxTasks: number;
  #closed = false;

  /** Holds up to `maxTasks` records before forgetting the oldest final ones. */
  constructor(maxTasks = 200_000) {
    this.#maxTasks = maxTasks;
  }

  /** How many records are held. */
  get size(): number {
    return this.#tasks.size;
  }

  create(task: NewTask): Promise<{ taskId: string; created: boolean }> {
    return this.#run(() => {
      const record = newTaskRecord(task);
      if (record.idempotencyKey !== null) {
        const first = this.#byIdempotencyKey.get(
          idempotencyIndex(record.owner, record.idempotencyKey),
        );
        if (first !== undefined) return { taskId: first, created: false };
      }
      if (this.#tasks.has(record.taskId)) return { taskId: record.taskId, created: false };
      this.#insert(record);
      return { taskId: record.taskId, created: true };
    });
  }

  async createMany(tasks: readonly NewTask[]): Promise<{ taskId: string; created: boolean }[]> {
    return await Promise.all(tasks.map((task) => this.create(task)));
  }

  takenKeys(owner: string, keys: readonly string[]): Promise<Set<string>> {
    return this.#run(() =>
      new Set(keys.filter((key) => this.#byIdempotencyKey.has(idempotencyIndex(owner, key))))
    );
  }

  markStarted(notice: StartedNotice): Promise<void> {
    return this.#run(() => {
      const startedAt = toMillis(notice.startedAt);
      const record = this.#tasks.get(notice.taskId);
      if (record === undefined || isFinalStatus(record.status)) return;
      record.status = "running";
      record.worker = storableText(notice.worker);
      record.startedAt = startedAt;
      record.attempts = Math.max(record.attempts, notice.attempt);
    });
  }

  markRetrying(taskId: string, error: WireError): Promise<void> {
    return this.#run(() => {
      const record = this.#tasks.get(taskId);
      if (record === undefined || isFinalStatus(record.status)) return;
      record.status = "queued";
      record.errorCode = error.code;
      record.errorMessage = storableText(error.message);
    });
  }

  complete(result: ResultMessage): Promise<boolean> {
    return this.#run(() => {
      // Built first, as the durable stores do, so that bad times are refused whatever the task's state.
      const orphan = orphanRecord(result);
      const record = this.#tasks.get(result.taskId);
      if (record === undefined) {
        this.#insert(orphan);
        return true;
      }
      if (isFinalStatus(record.status)) return false;
      applyResult(record, result);
      return true;
    });
  }

  cancel(taskId: string): Promise<CancelOutcome> {
    return this.#run(() => {
      const record = this.#tasks.get(taskId);
      if (record === undefined) return "not_found";
      if (record.status !== "queued") return "too_late";
      record.status = "cancelled";
      record.finishedAt = Date.now();
      return "cancelled";
    });
  }

  remove(taskId: string): Promise<void> {
    return this.#run(() => this.#delete(taskId));
  }

  markPublished(taskId: string): Promise<void> {
    return this.#run(() => {
      const record = this.#tasks.get(taskId);
      if (record !== undefined && record.publishedAt === null) record.publishedAt = Date.now();
    });
  }

  async markPublishedMany(taskIds: readonly string[]): Promise<void> {
    await Promise.all(taskIds.map((taskId) => this.markPublished(taskId)));
  }

  published(taskId: string): Promise<boolean> {
    return this.#run(() => (this.#tasks.get(taskId)?.publishedAt ?? null) !== null);
  }

  reopen(taskId: string): Promise<void> {
    return this.#run(() => {
      const record = this.#tasks.get(taskId);
      if (record === undefined || !isFinalStatus(record.status)) return;
      record.status = "queued";
      record.attempts = 0;
      record.worker = null;
      record.startedAt = null;
      record.finishedAt = null;
      record.durationMs = null;
      record.output = null;
      record.outputRef = null;
      record.errorCode = null;
      record.errorMessage = null;
    });
  }

  filesInUse(refs: readonly string[]): Promise<Set<string>> {
    return this.#run(() => {
      const wanted = new Set(refs);
      const found = new Set<string>();
      for (const record of this.#tasks.values()) {
        if (record.fileRef !== null && wanted.has(record.fileRef)) found.add(record.fileRef);
      }
      return found;
    });
  }

  matchIds(prefix: string, limit: number): Promise<string[]> {
    return this.#run(() => {
      if (!isTaskIdPrefix(prefix)) return [];
      const ids = [...this.#tasks.keys()].filter((taskId) => taskId.startsWith(prefix));
      return ids.sort().slice(0, limit);
    });
  }

  get(taskId: string): Promise<TaskView | undefined> {
    return this.#run(() => {
      const record = this.#tasks.get(taskId);
      return record === undefined ? undefined : toTaskView(record);
    });
  }

  submission(taskId: string): Promise<NewTask | undefined> {
    return this.#run(() => {
      const record = this.#tasks.get(taskId);
      return record === undefined ? undefined : toSubmission(record);
    });
  }

  list(query: TaskQuery): Promise<TaskPage> {
    return this.#run(() => this.#list(query));
  }

  prune(before: string, limit: number): Promise<{ removed: number; blobKeys: string[] }> {
    return this.#run(() => this.#prune(before, limit));
  }

  /** Forgets every record; later calls reject with `STORE_UNAVAILABLE`, as a durable store's would. */
  close(): Promise<void> {
    this.#closed = true;
    this.#tasks.clear();
    this.#byIdempotencyKey.clear();
    return Promise.resolve();
  }

  #run<T>(operation: () => T): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new ColmenaError("STORE_UNAVAILABLE", { cause: new Error("Task store is closed") }),
      );
    }
    return Promise.try(operation);
  }

  #list(query: TaskQuery): TaskPage {
    const limit = checkListLimit(query.limit);
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const since = query.since === undefined ? undefined : toMillis(query.since);
    const until = query.until === undefined ? undefined : toMillis(query.until);
    const statuses = query.statuses === undefined ? undefined : new Set(query.statuses);
    const matching: TaskRecord[] = [];
    for (const record of this.#tasks.values()) {
      if (statuses !== undefined && !statuses.has(record.status)) continue;
      if (query.taskType !== undefined && record.taskType !== query.taskType) continue;
      if (query.clientKind !== undefined && record.clientKind !== query.clientKind) continue;
      if (query.clientName !== undefined && record.clientName !== query.clientName) continue;
      if (query.owner !== undefined && record.owner !== query.owner) continue;
      if (since !== undefined && record.submittedAt < since) continue;
      if (until !== undefined && record.submittedAt >= until) continue;
      if (
        after !== undefined &&
        (record.submittedAt > after.submittedAt ||
          (record.submittedAt === after.submittedAt && record.taskId >= after.taskId))
      ) continue;
      matching.push(record);
    }
    matching.sort(newestFirst);
    const page = matching.slice(0, limit);
    const last = page.at(-1);
    const nextCursor = matching.length > limit && last !== undefined ? encodeCursor(last) : null;
    return { items: page.map(toTaskView), nextCursor };
  }

  #prune(before: string, limit: number): { removed: number; blobKeys: string[] } {
    const cutoff = toMillis(before);
    const max = checkPruneLimit(limit);
    const expired = [...this.#tasks.values()]
      .filter((record) =>
        isFinalStatus(record.status) && record.finishedAt !== null && record.finishedAt < cutoff
      )
      .sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0))
      .slice(0, max);
    const blobKeys: string[] = [];
    const files = new Set<string>();
    for (const record of expired) {
      if (record.payloadRef !== null) blobKeys.push(record.payloadRef);
      if (record.fileRef !== null) files.add(record.fileRef);
      if (record.outputRef !== null) blobKeys.push(record.outputRef);
      this.#delete(record.taskId);
    }
    if (files.size > 0) {
      // An upload several tasks read goes with the last of them.
      for (const record of this.#tasks.values()) {
        if (record.fileRef !== null) files.delete(record.fileRef);
      }
      blobKeys.push(...files);
    }
    return { removed: expired.length, blobKeys };
  }

  #insert(record: TaskRecord): void {
    this.#tasks.set(record.taskId, record);
    if (record.idempotencyKey !== null) {
      this.#byIdempotencyKey.set(
        idempotencyIndex(record.owner, record.idempotencyKey),
        record.taskId,
      );
    }
    if (this.#tasks.size > this.#maxTasks) this.#evict();
  }

  #delete(taskId: string): void {
    const record = this.#tasks.get(taskId);
    if (record === undefined) return;
    this.#tasks.delete(taskId);
    if (record.idempotencyKey !== null) {
      this.#byIdempotencyKey.delete(idempotencyIndex(record.owner, record.idempotencyKey));
    }
  }

  #evict(): void {
    // Evict 1 % more than needed, so that a full store does not scan on every insert.
    const excess = this.#tasks.size - this.#maxTasks + Math.ceil(this.#maxTasks / 100);
    const victims: string[] = [];
    for (const [taskId, record] of this.#tasks) {
      if (victims.length >= excess) break;
      if (isFinalStatus(record.status)) victims.push(taskId);
    }
    for (const taskId of victims) this.#delete(taskId);
  }
}
