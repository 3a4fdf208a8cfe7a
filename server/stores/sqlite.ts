/**
 * The SQLite task store: with its writer thread (`sqlite_writer.ts`), the only code that imports
 * `node:sqlite`. Task records in one file beside the server, durable across restarts and power loss, with
 * no service to run. The schema is brought up to date at start-up from the numbered files in
 * `migrations/sqlite/`, in one transaction.
 *
 * Writes go to a writer thread (`sqlite_writer.ts`) that owns the connection they use: those of one
 * event-loop turn leave together (`setImmediate`); up to two batches are in flight, and while the thread
 * applies them the next one gathers (group commit). The thread applies its batches in the order they were
 * sent, each in its own transaction, so writes keep their order. It answers after each batch's COMMIT, and
 * only then does each caller's promise resolve. Reads use a second connection on the
 * calling thread; in WAL mode they see every committed write. Times are stored as milliseconds since the
 * epoch (INTEGER), JSON values as text.
 *
 * @module
 */
import {
  DatabaseSync,
  type SQLInputValue,
  type SQLOutputValue,
  type StatementSync,
} from "node:sqlite";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { clearImmediate, setImmediate } from "node:timers";
import { ColmenaError, type WireError } from "../../shared/errors.ts";
import type { CancelOutcome, NewTask, TaskPage, TaskQuery, TaskStore } from "../../shared/ports.ts";
import type { TaskView } from "../../shared/protocol.ts";
import type { ResultMessage, StartedNotice } from "../../shared/queue_messages.ts";
import { type Migration, readMigrations } from "./migrations.ts";
import { WalSync } from "./wal_sync.ts";
import {
  type Cell,
  COLUMN_NAMES,
  recordCells,
  recordFromRow,
  selectList,
  TASK_COLUMNS,
} from "./columns.ts";
import {
  applyBatch,
  configure,
  type FromWriter,
  prepareWrites,
  type StatementName,
  type Statements,
  type ToWriter,
  type WriteArgs,
  type WriteCall,
  type WriteName,
  type WriterError,
  type WriteResult,
  writeSql,
} from "./sqlite_writer.ts";
import {
  checkListLimit,
  checkPruneLimit,
  decodeCursor,
  encodeCursor,
  isTaskIdPrefix,
  newTaskRecord,
  orphanRecord,
  prefixRange,
  storableText,
  type TaskRecord,
  toMillis,
  toSubmission,
  toTaskView,
} from "./records.ts";

const SELECT_COLUMNS = selectList("sqlite");

/** The placeholders of an INSERT of every column. */
const PLACEHOLDERS = TASK_COLUMNS.map(() => "?").join(", ");

type Row = Record<string, SQLOutputValue>;

/** The fields {@linkcode pushNewTaskCells} writes, in the order it writes them: the table's. */
const NEW_TASK_FIELDS = [
  "taskId",
  "taskType",
  "status",
  "priority",
  "clientName",
  "clientKind",
  "origin",
  "payload",
  "payloadRef",
  "output",
  "outputRef",
  "errorCode",
  "errorMessage",
  "attempts",
  "maxAttempts",
  "timeoutMs",
  "worker",
  "durationMs",
  "submittedAt",
  "startedAt",
  "finishedAt",
  "idempotencyKey",
  "fileRef",
  "owner",
  "publishedAt",
] as const;
if (NEW_TASK_FIELDS.join() !== TASK_COLUMNS.map((each) => each.field).join()) {
  throw new TypeError("Cannot load the SQLite store: the columns of a new task are out of order");
}

/**
 * Appends the cells of a new task's row, exactly `recordCells(newTaskRecord(task), "sqlite")`, without
 * making the record (SQLite keeps each field as it is); the order is checked against the table above.
 */
export function pushNewTaskCells(cells: Cell[], task: NewTask): void {
  const clientName = storableText(task.client.name);
  cells.push(
    task.taskId,
    storableText(task.taskType),
    "queued",
    task.priority,
    clientName,
    task.client.kind,
    storableText(task.origin),
    JSON.stringify(task.payload) ?? null,
    task.payloadRef ?? null,
    null,
    null,
    null,
    null,
    0,
    task.maxAttempts,
    task.timeoutMs,
    null,
    null,
    toMillis(task.submittedAt),
    null,
    null,
    task.idempotencyKey === undefined ? null : storableText(task.idempotencyKey),
    task.fileRef ?? null,
    task.owner === undefined ? clientName : storableText(task.owner),
    null,
  );
}

/** Keys looked up by one SELECT of `takenKeys`. */
const KEYS_PER_SELECT = 50;

/** SQLite's result code for a full disk (`SQLITE_FULL`). */
const SQLITE_FULL = 13;

/**
 * A vendor error becomes `STORE_UNAVAILABLE`, with the original as its cause; a full disk says so. SQLite
 * rolls the failed transaction back, so the file stays whole and writes work again once there is room.
 */
function storeError(err: unknown): ColmenaError {
  if (err instanceof ColmenaError) return err;
  // `errcode` when a statement fails; `exec` (the COMMIT) gives only SQLite's message.
  const code = (err as { errcode?: unknown } | null)?.errcode;
  if (
    code === SQLITE_FULL || (err instanceof Error && /database or disk is full/.test(err.message))
  ) {
    return new ColmenaError("STORE_UNAVAILABLE", {
      message: "El disco del almacén de tareas está lleno; inténtelo de nuevo cuando haya espacio",
      cause: err,
    });
  }
  return new ColmenaError("STORE_UNAVAILABLE", { cause: err });
}

/** The error the writer thread sent back, as an `Error` with SQLite's code, then as the store's error. */
function writerError(error: WriterError): ColmenaError {
  const cause = new Error(error.message);
  return storeError(error.errcode === undefined ? cause : Object.assign(cause, error));
}

function closedError(): ColmenaError {
  return new ColmenaError("STORE_UNAVAILABLE", { cause: new Error("Task store is closed") });
}

/** The statements of the main thread's connection, which only reads. */
function prepareReads(db: DatabaseSync) {
  return {
    published: db.prepare("SELECT published_at FROM tasks WHERE task_id = ?"),
    fileInUse: db.prepare("SELECT 1 AS found FROM tasks WHERE file_ref = ? LIMIT 1"),
    get: db.prepare(`SELECT ${SELECT_COLUMNS} FROM tasks WHERE task_id = ?`),
    // A range scan of the primary key: [prefix, prefix with its last character incremented).
    matchIds: db.prepare(
      "SELECT task_id FROM tasks WHERE task_id >= ? AND task_id < ? ORDER BY task_id LIMIT ?",
    ),
    submission: db.prepare(`SELECT ${selectList("sqlite", true)} FROM tasks WHERE task_id = ?`),
  };
}

/** The SELECT of a `list` page and its parameters; throws what the query's values fail with. */
export function listStatement(query: TaskQuery): { sql: string; params: SQLInputValue[] } {
  const limit = checkListLimit(query.limit);
  const where: string[] = [];
  const params: SQLInputValue[] = [];
  if (query.statuses !== undefined) {
    where.push(`status IN (${query.statuses.map(() => "?").join(", ")})`);
    params.push(...query.statuses);
  }
  if (query.taskType !== undefined) {
    where.push("task_type = ?");
    params.push(storableText(query.taskType));
  }
  if (query.clientKind !== undefined) {
    where.push("client_kind = ?");
    params.push(query.clientKind);
  }
  if (query.clientName !== undefined) {
    where.push("client_name = ?");
    params.push(storableText(query.clientName));
  }
  if (query.owner !== undefined) {
    where.push("owner = ?");
    params.push(storableText(query.owner));
  }
  if (query.since !== undefined) {
    where.push("submitted_at >= ?");
    params.push(toMillis(query.since));
  }
  if (query.until !== undefined) {
    where.push("submitted_at < ?");
    params.push(toMillis(query.until));
  }
  if (query.cursor !== undefined) {
    const after = decodeCursor(query.cursor);
    where.push("(submitted_at, task_id) < (?, ?)");
    params.push(after.submittedAt, after.taskId);
  }
  const sql = `SELECT ${SELECT_COLUMNS} FROM tasks
    ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
    ORDER BY submitted_at DESC, task_id DESC LIMIT ?`;
  params.push(limit + 1);
  return { sql, params };
}

/** The SQL of every write statement, as the writer thread prepares it (for tests of query plans). */
export const WRITE_SQL: Readonly<Record<StatementName, string>> = writeSql(
  COLUMN_NAMES,
  PLACEHOLDERS,
);

/**
 * A batch this small is applied on the calling thread when the writer thread is idle and writes are few
 * (at most {@linkcode QUIET_WRITES} in the last {@linkcode RATE_WINDOW_MS}): handing it over costs more
 * than the COMMIT (two thread wake-ups, about 0.1 ms each way, measured), and at such a rate the event loop
 * has the time. Under load, batches go to the thread, which takes their fsync off the event loop.
 */
const INLINE_BATCH = 4;

/** Options of {@linkcode openSqliteTaskStore}. */
export interface SqliteStoreOptions {
  /**
   * The largest batch applied on the calling thread while the store is quiet; `0` sends every batch to
   * the writer thread (tests use it to run every write through the thread). @defaultValue `4`
   */
  inlineBatch?: number;
  /**
   * Whether to ask SQLite for WAL mode; `false` keeps its rollback journal, as a file system that refuses WAL
   * does (tests use it to run the store that way). @defaultValue `true`
   */
  wal?: boolean;
}
/**
 * Batches sent to the writer thread and not yet answered. The thread applies them one after another, in
 * order, each in its own transaction; with a second one already there it goes on to it as soon as a COMMIT
 * ends, instead of idling while the answer crosses to this thread, its callers run and the next batch
 * crosses back (about a third of each batch's round trip under load, measured). Writes keep their order:
 * the thread takes its messages in the order they were sent.
 */
const MAX_IN_FLIGHT = 2;
/**
 * Writes no client waits for (a result's, whose broker ack alone waits for it, and the marks of a start, a
 * retry or a confirm): a quiet batch of only these is made durable by the next sync of the WAL anyone
 * starts, or after {@linkcode DEFERRED_SYNC_MS}. With one task at a time, the next task's record then does
 * not queue behind the fsync of the last one's result, and its own fsync makes that result durable too.
 */
const DEFERRABLE: ReadonlySet<WriteName> = new Set<WriteName>([
  "complete",
  "markStarted",
  "markRetrying",
  "markPublished",
  "markPublishedMany",
]);
/** How long a batch of {@linkcode DEFERRABLE} writes waits for another sync of the WAL before its own. */
const DEFERRED_SYNC_MS = 2;
/** The window over which the write rate is counted, in milliseconds. */
const RATE_WINDOW_MS = 100;
/** Most writes in one window for the store to count as quiet (3,000 writes/s). */
const QUIET_WRITES = 300;

/** One write waiting for its batch. */
interface QueuedWrite {
  readonly call: WriteCall;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/**
 * The main thread's side of the writer thread (`sqlite_writer.ts`): messages are answered one by one, in
 * the order they were sent. A thread that dies rejects what it holds and every later message; one that
 * cannot load for want of read permission on its module rejects with `NotCapable`, which names the file.
 */
class WriterThread {
  readonly #worker: Worker;
  /** The messages sent and not yet answered, oldest first: the thread answers them in order. */
  readonly #waiting: PromiseWithResolvers<FromWriter>[] = [];
  #dead: Error | undefined;

  constructor() {
    this.#worker = new Worker(new URL("./sqlite_writer.ts", import.meta.url), {
      type: "module",
      name: "colmena-sqlite-writer",
    });
    this.#worker.onmessage = (event: MessageEvent<FromWriter>) => {
      this.#waiting.shift()?.resolve(event.data);
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#die(
        /Requires \w+ access/.test(event.message)
          ? new Deno.errors.NotCapable(event.message)
          : new Error(`SQLite writer thread failed: ${event.message}`),
      );
    };
    this.#worker.onmessageerror = () =>
      this.#die(new Error("SQLite writer thread sent a bad message"));
  }

  /** Sends one message and waits for its answer; messages sent meanwhile are answered after it. */
  send(message: ToWriter): Promise<FromWriter> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const waiting = Promise.withResolvers<FromWriter>();
    this.#waiting.push(waiting);
    this.#worker.postMessage(message);
    return waiting.promise;
  }

  #die(err: Error): void {
    this.#dead = err;
    for (const waiting of this.#waiting.splice(0)) waiting.reject(err);
    this.#worker.terminate();
  }

  /** Stops the thread at once; later messages reject. */
  terminate(): void {
    this.#dead ??= new Error("SQLite writer thread is closed");
    this.#worker.terminate();
  }
}

/**
 * Applies the migrations not recorded in `colmena_migrations`, all in one transaction. BEGIN IMMEDIATE takes
 * the write lock first, so two processes opening one file migrate one after the other, and the later one
 * finds nothing left to do. Versions are what count: the names of migrations 1 to 3 recorded before the
 * numbered files ("tasks", "file_ref", "file_ref_index") stay as they are.
 */
function migrate(db: DatabaseSync, migrations: readonly Migration[]): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    db.exec(
      `CREATE TABLE IF NOT EXISTS colmena_migrations (
         version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`,
    );
    const applied = new Set(
      db.prepare("SELECT version FROM colmena_migrations").all().map((row) => row.version),
    );
    const record = db.prepare(
      "INSERT INTO colmena_migrations (version, name, applied_at) VALUES (?, ?, ?)",
    );
    for (const migration of migrations) {
      if (applied.has(migration.version)) continue;
      db.exec(migration.sql);
      record.run(migration.version, migration.name, new Date().toISOString());
    }
    db.exec("COMMIT");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw err;
  }
}

/**
 * Keeps task records in a SQLite file (WAL, `synchronous=FULL`): a writer thread applies the writes, the
 * calling thread reads, and applies small batches while the store is quiet (with `synchronous=NORMAL`, each
 * answered after an `fdatasync` of the WAL off the event loop: {@linkcode WalSync}). A write is answered
 * only once it is on disk. Open it with {@linkcode openSqliteTaskStore}.
 */
export class SqliteTaskStore implements TaskStore {
  readonly #db: DatabaseSync;
  readonly #sql: ReturnType<typeof prepareReads>;
  readonly #writer: WriterThread;
  /** The write statements of the calling thread's connection, for small batches while quiet. */
  readonly #inline: Statements;
  readonly #inlineBatch: number;
  #windowStart = 0;
  #windowWrites = 0;
  #lastWindowWrites = 0;
  #queue: QueuedWrite[] = [];
  #flushTimer: ReturnType<typeof setImmediate> | undefined;
  /** The batches sent to the writer thread and not yet answered, each settled after its COMMIT. */
  readonly #inFlight = new Set<Promise<void>>();
  readonly #keySelects = new Map<number, StatementSync>();
  /**
   * Syncs the WAL for the batches applied on this thread, whose connection commits without an fsync;
   * `undefined` when the file is not in WAL mode (a database in memory, a file system that refuses WAL).
   */
  readonly #wal: WalSync | undefined;
  /** Batches applied on this thread and not yet settled: they wait for a sync of the WAL. */
  #awaitingSync = 0;
  /** Settles batches in the order of their COMMITs while some wait for a sync of the WAL. */
  #settling: Promise<void> = Promise.resolve();
  #closed = false;

  /**
   * Wraps a read connection and an open writer thread; {@linkcode openSqliteTaskStore} makes both. With
   * `wal`, the read connection commits with `synchronous=NORMAL` and its batches are answered after `wal`
   * has synced the file.
   */
  constructor(
    db: DatabaseSync,
    writer: WriterThread,
    options: SqliteStoreOptions = {},
    wal?: WalSync,
  ) {
    this.#db = db;
    this.#sql = prepareReads(db);
    this.#inline = prepareWrites(db, COLUMN_NAMES, PLACEHOLDERS);
    this.#inlineBatch = options.inlineBatch ?? INLINE_BATCH;
    this.#writer = writer;
    this.#wal = wal;
  }

  create(task: NewTask): Promise<{ taskId: string; created: boolean }> {
    return this.#write("create", () => {
      const record = newTaskRecord(task);
      return [recordCells(record, "sqlite"), record.owner, record.idempotencyKey];
    });
  }

  createMany(tasks: readonly NewTask[]): Promise<{ taskId: string; created: boolean }[]> {
    return this.#write("createMany", () => {
      const cells: Cell[] = [];
      for (const task of tasks) pushNewTaskCells(cells, task);
      return [cells];
    });
  }

  takenKeys(owner: string, keys: readonly string[]): Promise<Set<string>> {
    return this.#read(() => {
      const taken = new Set<string>();
      for (let at = 0; at < keys.length; at += KEYS_PER_SELECT) {
        const chunk = keys.slice(at, at + KEYS_PER_SELECT);
        for (const row of this.#keysSelect(chunk.length).all(owner, ...chunk)) {
          taken.add(String(row.idempotency_key));
        }
      }
      return taken;
    });
  }

  /** The SELECT of the keys taken among `count` keys of one owner, prepared on first use. */
  #keysSelect(count: number): StatementSync {
    let statement = this.#keySelects.get(count);
    if (statement === undefined) {
      statement = this.#db.prepare(
        `SELECT idempotency_key FROM tasks WHERE owner = ? AND idempotency_key IN (${
          Array.from({ length: count }, () => "?").join(", ")
        })`,
      );
      this.#keySelects.set(count, statement);
    }
    return statement;
  }

  markStarted(notice: StartedNotice): Promise<void> {
    return this.#write("markStarted", () => [
      storableText(notice.worker),
      toMillis(notice.startedAt),
      notice.attempt,
      notice.taskId,
    ]);
  }

  markRetrying(taskId: string, error: WireError): Promise<void> {
    return this.#write("markRetrying", () => [error.code, storableText(error.message), taskId]);
  }

  complete(result: ResultMessage): Promise<boolean> {
    return this.#write("complete", () => [recordCells(orphanRecord(result), "sqlite")]);
  }

  cancel(taskId: string): Promise<CancelOutcome> {
    return this.#write("cancel", () => [Date.now(), taskId]);
  }

  reopen(taskId: string): Promise<void> {
    return this.#write("reopen", () => [taskId]);
  }

  remove(taskId: string): Promise<void> {
    return this.#write("remove", () => [taskId]);
  }

  markPublished(taskId: string): Promise<void> {
    return this.#write("markPublished", () => [Date.now(), taskId]);
  }

  markPublishedMany(taskIds: readonly string[]): Promise<void> {
    return this.#write("markPublishedMany", () => [Date.now(), [...taskIds]]);
  }

  published(taskId: string): Promise<boolean> {
    return this.#read(() => {
      const row = this.#sql.published.get(taskId);
      return row !== undefined && row.published_at !== null;
    });
  }

  prune(before: string, limit: number): Promise<{ removed: number; blobKeys: string[] }> {
    return this.#write("prune", () => [toMillis(before), checkPruneLimit(limit)]);
  }

  filesInUse(refs: readonly string[]): Promise<Set<string>> {
    return this.#read(() =>
      new Set(refs.filter((ref) => this.#sql.fileInUse.get(ref) !== undefined))
    );
  }

  matchIds(prefix: string, limit: number): Promise<string[]> {
    return this.#read(() => {
      if (!isTaskIdPrefix(prefix)) return [];
      const [low, high] = prefixRange(prefix);
      const rows = this.#sql.matchIds.all(low, high, limit) as { task_id: string }[];
      return rows.map((row) => row.task_id);
    });
  }

  get(taskId: string): Promise<TaskView | undefined> {
    return this.#read(() => {
      const row = this.#sql.get.get(taskId);
      return row === undefined ? undefined : toTaskView(recordFromRow(row, "sqlite"));
    });
  }

  submission(taskId: string): Promise<NewTask | undefined> {
    return this.#read(() => {
      const row = this.#sql.submission.get(taskId);
      return row === undefined ? undefined : toSubmission(recordFromRow(row, "sqlite"));
    });
  }

  list(query: TaskQuery): Promise<TaskPage> {
    if (this.#closed) return Promise.reject(closedError());
    return Promise.try(() => {
      const limit = checkListLimit(query.limit);
      const { sql, params } = listStatement(query);
      let records: TaskRecord[];
      try {
        records = this.#db.prepare(sql).all(...params).map((row: Row) =>
          recordFromRow(row, "sqlite")
        );
      } catch (err) {
        throw storeError(err);
      }
      const page = records.slice(0, limit);
      const last = page.at(-1);
      return {
        items: page.map(toTaskView),
        nextCursor: records.length > limit && last !== undefined ? encodeCursor(last) : null,
      };
    });
  }

  /**
   * Applies the writes still queued, then closes the writer thread and the file; later calls reject with
   * `STORE_UNAVAILABLE`.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let failure: ColmenaError | undefined;
    try {
      while (this.#inFlight.size > 0 || this.#queue.length > 0) {
        this.#flush();
        await Promise.all(this.#inFlight);
      }
      await this.#settling;
      await this.#wal?.close();
      const reply = await this.#writer.send({ type: "close" }).catch((err: unknown) => {
        failure = storeError(err);
      });
      if (reply?.type === "failed") failure = writerError(reply.error);
    } finally {
      this.#writer.terminate();
      try {
        this.#db.close();
      } catch (err) {
        failure ??= storeError(err);
      }
    }
    if (failure !== undefined) throw failure;
  }

  /**
   * Queues a write for the next batch. `args` runs now, so bad input rejects at once without touching the
   * batch; the write runs in the writer thread, and its promise settles after its batch's COMMIT.
   */
  #write<K extends WriteName>(name: K, args: () => WriteArgs<K>): Promise<WriteResult<K>> {
    if (this.#closed) return Promise.reject(closedError());
    let call: WriteCall;
    try {
      call = [name, args()] as WriteCall;
    } catch (err) {
      return Promise.reject(err);
    }
    const { promise, resolve, reject } = Promise.withResolvers<WriteResult<K>>();
    this.#queue.push({ call, resolve: resolve as (value: unknown) => void, reject });
    if (this.#inFlight.size < MAX_IN_FLIGHT) this.#flushTimer ??= setImmediate(() => this.#flush());
    return promise;
  }

  #read<T>(query: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    try {
      return Promise.resolve(query());
    } catch (err) {
      return Promise.reject(storeError(err));
    }
  }

  /**
   * Sends what is queued as one batch, unless a batch is in flight: then what arrives meanwhile waits for
   * its COMMIT and goes as the next batch (group commit).
   */
  #flush(): void {
    if (this.#flushTimer !== undefined) clearImmediate(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#inFlight.size >= MAX_IN_FLIGHT || this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    const calls = batch.map((write) => write.call);
    // Inline only with nothing in flight: a batch on this thread must not overtake one the writer holds.
    if (this.#quiet(_rowsOf(calls)) && this.#inFlight.size === 0) {
      const reply = { type: "done", outcomes: applyBatch(this.#db, this.#inline, calls) } as const;
      if (this.#wal === undefined) settle(batch, reply);
      else {
        const synced = calls.every(([name]) => DEFERRABLE.has(name))
          ? this.#wal.deferred(DEFERRED_SYNC_MS)
          : this.#wal.request();
        this.#settleAfterSync(batch, reply, synced);
      }
      return;
    }
    const sent: Promise<void> = this.#writer.send({ type: "batch", writes: calls })
      .then((reply) => this.#settleInOrder(batch, reply), (err: unknown) => {
        for (const write of batch) write.reject(storeError(err));
      })
      .finally(() => {
        this.#inFlight.delete(sent);
        // What queued meanwhile goes once the callers of this batch have run (their own writes join it).
        if (this.#queue.length > 0 && !this.#closed) {
          this.#flushTimer ??= setImmediate(() => this.#flush());
        }
      });
    this.#inFlight.add(sent);
  }

  /**
   * Settles a batch committed on this thread (without an fsync) once `synced`, a sync of the WAL begun after
   * its COMMIT, has ended; when the sync fails, the batch's durability is unknown and its writes reject.
   */
  #settleAfterSync(batch: readonly QueuedWrite[], reply: FromWriter, synced: Promise<void>): void {
    this.#awaitingSync++;
    this.#settling = this.#settling.then(() => synced).then(
      () => settle(batch, reply),
      (err: unknown) => {
        for (const write of batch) write.reject(storeError(err));
      },
    ).finally(() => {
      this.#awaitingSync--;
    });
  }

  /** Settles a batch of the writer thread, after the earlier ones still waiting for a sync of the WAL. */
  #settleInOrder(batch: readonly QueuedWrite[], reply: FromWriter): void {
    if (this.#awaitingSync === 0) settle(batch, reply);
    else this.#settling = this.#settling.then(() => settle(batch, reply));
  }

  /** Counts a batch of `size` writes; whether it is small and the store quiet enough to apply it here. */
  #quiet(size: number): boolean {
    const now = performance.now();
    if (now - this.#windowStart >= RATE_WINDOW_MS) {
      this.#lastWindowWrites = now - this.#windowStart < 2 * RATE_WINDOW_MS
        ? this.#windowWrites
        : 0;
      this.#windowStart = now;
      this.#windowWrites = 0;
    }
    this.#windowWrites += size;
    return size <= this.#inlineBatch &&
      Math.max(this.#lastWindowWrites, this.#windowWrites) <= QUIET_WRITES;
  }
}

/** Settles each write of a batch with its outcome. */
/** How many rows a batch writes: a `createMany` or `markPublishedMany` counts each of its tasks. */
function _rowsOf(calls: readonly WriteCall[]): number {
  let rows = 0;
  for (const [name, args] of calls) {
    rows += name === "createMany"
      ? args[0].length / TASK_COLUMNS.length
      : name === "markPublishedMany"
      ? args[1].length
      : 1;
  }
  return rows;
}

function settle(batch: readonly QueuedWrite[], reply: FromWriter): void {
  if (reply.type !== "done") {
    const err = writerError(reply.type === "failed" ? reply.error : { message: reply.type });
    for (const write of batch) write.reject(err);
    return;
  }
  batch.forEach((write, i) => {
    const outcome = reply.outcomes[i];
    if (outcome?.ok) write.resolve(outcome.value);
    else write.reject(writerError(outcome?.error ?? { message: "No outcome for a write" }));
  });
}

/**
 * Opens (creating when needed, with its folder) the SQLite file at `path`, sets WAL and `synchronous=FULL`
 * (NORMAL on the calling thread's connection once migrated, its writes answered after a WAL sync),
 * brings its schema up to date from the numbered files in `migrations/sqlite/`, and starts its writer
 * thread. Rejects with `STORE_UNAVAILABLE` when the file cannot be used.
 */
export async function openSqliteTaskStore(
  path: string,
  options: SqliteStoreOptions = {},
): Promise<SqliteTaskStore> {
  let db: DatabaseSync | undefined;
  let writer: WriterThread | undefined;
  try {
    const migrations = await readMigrations("sqlite");
    if (path !== ":memory:") await mkdir(dirname(path), { recursive: true });
    db = new DatabaseSync(path);
    configure(db, options.wal ?? true);
    migrate(db, migrations);
    // This connection's small batches commit without an fsync and are answered after `wal` syncs the file.
    // Only in WAL mode, which a file system may refuse (and a database in memory has no file): without a
    // `-wal` file, the connection keeps `synchronous=FULL` and each COMMIT syncs on its own.
    const mode = db.prepare("PRAGMA journal_mode").get()?.journal_mode;
    const wal = mode === "wal" ? new WalSync(path) : undefined;
    if (wal !== undefined) db.exec("PRAGMA synchronous = NORMAL");
    writer = new WriterThread();
    const reply = await writer.send({
      type: "open",
      path,
      wal: options.wal ?? true,
      columns: COLUMN_NAMES,
      placeholders: PLACEHOLDERS,
    });
    if (reply.type !== "opened") {
      throw writerError(reply.type === "failed" ? reply.error : { message: reply.type });
    }
    return new SqliteTaskStore(db, writer, options, wal);
  } catch (err) {
    writer?.terminate();
    db?.close();
    // A missing permission is a deployment mistake, not an outage: it goes up as it is, naming the flag.
    if (err instanceof Deno.errors.NotCapable) throw err;
    throw new ColmenaError("STORE_UNAVAILABLE", {
      message: `No se puede abrir la base de datos SQLite ${path}`,
      cause: err,
    });
  }
}
