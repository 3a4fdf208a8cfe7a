/**
 * The SQLite store's writer thread: a `Worker` that owns the connection every write goes through, so that
 * executing statements and the fsync of each COMMIT happen off the server's event loop. The main thread
 * (`sqlite.ts`) sends a batch of writes, this thread applies them in one transaction and answers after its
 * COMMIT with one outcome per write; while a batch runs, the main thread gathers the next one (group commit).
 *
 * Loaded as a worker it listens for its messages; imported, it only gives the statements' SQL and types.
 * It imports nothing but `node:sqlite` at run time, so that the server needs read permission on this one
 * file (`--allow-read=…,./server/stores/sqlite_writer.ts`) and `deno compile` needs it `--include`d.
 *
 * @module
 */
import { DatabaseSync, type StatementResultingChanges, type StatementSync } from "node:sqlite";
import type { Cell } from "./columns.ts";

/** A task's state in which it never changes again, as SQL. */
export const FINAL_SQL = "status IN ('succeeded', 'failed', 'cancelled')";
const NOT_FINAL = "status NOT IN ('succeeded', 'failed', 'cancelled')";

/** The column names of `tasks` in table order, as the main thread gives them with {@linkcode WriterOpen}. */
type ColumnList = string;

/** The statements the writer prepares. */
export type StatementName =
  | "insert"
  | "findByKey"
  | "markStarted"
  | "markRetrying"
  | "finish"
  | "complete"
  | "cancel"
  | "reopen"
  | "exists"
  | "remove"
  | "markPublished"
  | "prune"
  | "fileInUse";

/**
 * The SQL of the statements the writer prepares, by name. `prune` names the partial index `tasks_finished`
 * (without statistics SQLite would rather read every final task by status and sort them); its WHERE term on
 * status is word for word the index's predicate, which is what lets SQLite use a partial index.
 */
export function writeSql(columns: ColumnList, placeholders: string): Record<StatementName, string> {
  const insertRow = `INSERT INTO tasks (${columns}) VALUES (${placeholders})`;
  const cell = (name: string) => `?${finishCell(columns, name)}`;
  return {
    insert: `${insertRow} ON CONFLICT DO NOTHING`,
    findByKey: "SELECT task_id FROM tasks WHERE owner = ? AND idempotency_key = ?",
    markStarted:
      `UPDATE tasks SET status = 'running', worker = ?, started_at = ?, attempts = max(attempts, ?)
       WHERE task_id = ? AND ${NOT_FINAL}`,
    markRetrying: `UPDATE tasks SET status = 'queued', error_code = ?, error_message = ?
       WHERE task_id = ? AND ${NOT_FINAL}`,
    finish: `UPDATE tasks SET status = ${cell("status")}, worker = ${cell("worker")},
         started_at = ${cell("started_at")}, finished_at = ${cell("finished_at")},
         duration_ms = ${cell("duration_ms")}, attempts = max(attempts, ${cell("attempts")}),
         output = ${cell("output")}, output_ref = ${cell("output_ref")},
         error_code = ${cell("error_code")}, error_message = ${cell("error_message")}
       WHERE task_id = ${cell("task_id")} AND ${NOT_FINAL}`,
    complete: `${insertRow} ON CONFLICT (task_id) DO UPDATE SET
         status = excluded.status, worker = excluded.worker, started_at = excluded.started_at,
         finished_at = excluded.finished_at, duration_ms = excluded.duration_ms,
         attempts = max(tasks.attempts, excluded.attempts), output = excluded.output,
         output_ref = excluded.output_ref,
         error_code = excluded.error_code, error_message = excluded.error_message
       WHERE tasks.${NOT_FINAL}`,
    cancel: `UPDATE tasks SET status = 'cancelled', finished_at = ?
       WHERE task_id = ? AND status = 'queued'`,
    reopen: `UPDATE tasks SET status = 'queued', attempts = 0, worker = NULL, started_at = NULL,
         finished_at = NULL, duration_ms = NULL, output = NULL, output_ref = NULL,
         error_code = NULL, error_message = NULL
       WHERE task_id = ? AND ${FINAL_SQL}`,
    exists: "SELECT 1 AS found FROM tasks WHERE task_id = ?",
    remove: "DELETE FROM tasks WHERE task_id = ?",
    markPublished: "UPDATE tasks SET published_at = ? WHERE task_id = ? AND published_at IS NULL",
    prune: `DELETE FROM tasks WHERE task_id IN (
         SELECT task_id FROM tasks INDEXED BY tasks_finished
         WHERE ${FINAL_SQL} AND finished_at < ?
         ORDER BY finished_at LIMIT ?)
       RETURNING payload_ref, file_ref, output_ref`,
    fileInUse: "SELECT 1 AS found FROM tasks WHERE file_ref = ? LIMIT 1",
  };
}

/** The columns a result sets, in the order of the `complete` upsert's SET list, and the task's id. */
const FINISH_COLUMNS = [
  "task_id",
  "status",
  "worker",
  "started_at",
  "finished_at",
  "duration_ms",
  "attempts",
  "output",
  "output_ref",
  "error_code",
  "error_message",
];

/**
 * The 1-based position of a column in the INSERT's column list: the `finish` statement reads its values
 * from a result's cells (`?N`), so that the `complete` write sends one row of cells for both statements.
 */
function finishCell(columns: ColumnList, name: string): number {
  const at = columns.split(",").map((each) => each.trim()).indexOf(name);
  if (at < 0) throw new TypeError(`Cannot prepare the result update: no column "${name}"`);
  return at + 1;
}

/** How many of a row's cells the `finish` statement binds: up to the last column it reads. */
function finishArity(columns: ColumnList): number {
  return Math.max(...FINISH_COLUMNS.map((name) => finishCell(columns, name)));
}

/**
 * Sets what every connection to the store's file needs: WAL (unless `wal` is false), `synchronous=FULL` and
 * a busy timeout. Where the file system refuses WAL, SQLite keeps its rollback journal.
 *
 * FULL: a task answered `accepted` must survive a power loss. In WAL mode NORMAL skips the fsync at each
 * COMMIT and can lose the last transactions. Writes are batched, so FULL costs one fsync per batch, not per
 * task (docs/storage.md). The calling thread's connection alone is switched to NORMAL once migrated: its
 * writes are answered only after a sync of the WAL off the event loop (`wal_sync.ts`).
 */
export function configure(db: DatabaseSync, wal = true): void {
  if (wal) db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec("PRAGMA busy_timeout = 5000");
}

/**
 * Rows of one INSERT statement in `createMany`. Binding and stepping a statement per row costs more than the
 * row itself: with 50 rows a statement, a row took 8.2–8.7 µs of CPU against 15.1–15.2 one by one (40,000
 * rows in transactions of 250, a file on disk, 3 runs each).
 */
export const ROWS_PER_INSERT = 50;

/** The prepared write statements of one connection, and how many cells `finish` binds. */
export type Statements = Record<StatementName, StatementSync> & {
  readonly finishArity: number;
  /**
   * The INSERT of `rows` rows (up to {@linkcode ROWS_PER_INSERT}), prepared on first use; with `returning`,
   * it gives the id of each row it inserted.
   */
  insertRows(rows: number, returning?: boolean): StatementSync;
  /** `SAVEPOINT`, `ROLLBACK TO` and `RELEASE` of the savepoint `createMany` sets around each INSERT. */
  readonly savepoint: { set: StatementSync; rollBack: StatementSync; release: StatementSync };
  /**
   * The `markPublished` of `rows` tasks (up to {@linkcode ROWS_PER_INSERT}) in one UPDATE, prepared on
   * first use: 1.9 µs of CPU a task against 3.5–3.8 one by one (40,000 tasks in transactions of 250, 3 runs).
   */
  markPublishedRows(rows: number): StatementSync;
  /** The cells of a row, and where the task id, owner and idempotency key are among them. */
  readonly row: {
    readonly width: number;
    readonly taskId: number;
    readonly owner: number;
    readonly key: number;
  };
};

/** Prepares the write statements on a connection whose schema is current. */
export function prepareWrites(
  db: DatabaseSync,
  columns: ColumnList,
  placeholders: string,
): Statements {
  const prepared: Partial<Record<StatementName, StatementSync>> = {};
  for (const [name, text] of Object.entries(writeSql(columns, placeholders))) {
    prepared[name as StatementName] = db.prepare(text);
  }
  const inserts = new Map<string, StatementSync>();
  const marks = new Map<number, StatementSync>();
  return {
    ...prepared as Record<StatementName, StatementSync>,
    finishArity: finishArity(columns),
    row: {
      width: columns.split(",").length,
      taskId: finishCell(columns, "task_id") - 1,
      owner: finishCell(columns, "owner") - 1,
      key: finishCell(columns, "idempotency_key") - 1,
    },
    insertRows(rows, returning = false) {
      const key = `${rows}${returning ? "r" : ""}`;
      let statement = inserts.get(key);
      if (statement === undefined) {
        statement = db.prepare(
          `INSERT INTO tasks (${columns}) VALUES ${
            Array.from({ length: rows }, () => `(${placeholders})`).join(", ")
          } ON CONFLICT DO NOTHING${returning ? " RETURNING task_id" : ""}`,
        );
        inserts.set(key, statement);
      }
      return statement;
    },
    savepoint: {
      set: db.prepare("SAVEPOINT create_rows"),
      rollBack: db.prepare("ROLLBACK TO create_rows"),
      release: db.prepare("RELEASE create_rows"),
    },
    markPublishedRows(rows) {
      let statement = marks.get(rows);
      if (statement === undefined) {
        statement = db.prepare(
          `UPDATE tasks SET published_at = ? WHERE task_id IN (${
            Array.from({ length: rows }, () => "?").join(", ")
          }) AND published_at IS NULL`,
        );
        marks.set(rows, statement);
      }
      return statement;
    },
  };
}

/** A cell the driver returned as text, or `null`. */
function optText(row: Record<string, unknown>, column: string): string | null {
  const value = row[column];
  return typeof value === "string" ? value : null;
}

/**
 * Whether a statement wrote a row, from the count SQLite keeps of the rows it changed. The writes tell what
 * they did this way instead of with `RETURNING`: SQLite collects the rows a `RETURNING` gives in a table of
 * their own, and the driver makes an object of each. Without it, a create took 10.4–10.6 µs against 13.7–13.8
 * and a result 13.1–13.3 against 17.3–17.8 (the batches of `deno task bench:sqlite` replayed on one thread,
 * alternating, 3 runs each; docs/benchmarks.md).
 */
function changed(result: StatementResultingChanges): boolean {
  return Number(result.changes) > 0;
}

/** Each write the store makes, applied inside the writer's transaction. */
const WRITES = {
  create(
    sql: Statements,
    cells: Cell[],
    owner: string,
    key: string | null,
  ): { taskId: string; created: boolean } {
    const taskId = String(cells[0]);
    if (changed(sql.insert.run(...cells))) return { taskId, created: true };
    if (key !== null) {
      const first = sql.findByKey.get(owner, key);
      if (first !== undefined) return { taskId: String(first.task_id), created: false };
    }
    return { taskId, created: false };
  },
  /**
   * Several creates in one write, as `create` one after another would give: `cells` holds the rows one after
   * another (one flat array crosses to this thread faster than an array per row), which go in INSERTs of up
   * to {@linkcode ROWS_PER_INSERT} rows, and a row the INSERT skipped (its key already taken, also by an
   * earlier row of the same write) gets the task that holds its key.
   *
   * Each INSERT goes without `RETURNING` inside a savepoint (8.0–8.7 µs a row against 10.2–10.4 with
   * `RETURNING` and no savepoint, 50 rows an INSERT, the creates of the same batches): when it skipped a
   * row, it is rolled back to the savepoint and made again with `RETURNING`, which tells the rows it inserted.
   */
  createMany(sql: Statements, cells: Cell[]): { taskId: string; created: boolean }[] {
    const { width, taskId: idAt, owner: ownerAt, key: keyAt } = sql.row;
    const rows = cells.length / width;
    const inserted = new Set<unknown>();
    for (let at = 0; at < rows; at += ROWS_PER_INSERT) {
      const count = Math.min(ROWS_PER_INSERT, rows - at);
      const chunk = cells.slice(at * width, (at + count) * width);
      sql.savepoint.set.run();
      if (Number(sql.insertRows(count).run(...chunk).changes) === count) {
        for (let row = 0; row < count; row++) inserted.add(chunk[row * width + idAt]);
      } else {
        sql.savepoint.rollBack.run();
        for (const { task_id } of sql.insertRows(count, true).all(...chunk)) inserted.add(task_id);
      }
      sql.savepoint.release.run();
    }
    const outcomes: { taskId: string; created: boolean }[] = [];
    for (let at = 0; at < cells.length; at += width) {
      const taskId = String(cells[at + idAt]);
      const key = cells[at + keyAt] ?? null;
      if (inserted.has(taskId)) outcomes.push({ taskId, created: true });
      else {
        const first = key === null
          ? undefined
          : sql.findByKey.get(cells[at + ownerAt] ?? null, key);
        outcomes.push({
          taskId: first === undefined ? taskId : String(first.task_id),
          created: false,
        });
      }
    }
    return outcomes;
  },
  markStarted(
    sql: Statements,
    worker: string,
    startedAt: number,
    attempt: number,
    taskId: string,
  ): void {
    sql.markStarted.run(worker, startedAt, attempt, taskId);
  },
  markRetrying(sql: Statements, code: string, message: string, taskId: string): void {
    sql.markRetrying.run(code, message, taskId);
  },
  /**
   * A task's result: an UPDATE of its record when it is known (cheaper than the upsert: ~17 against
   * ~21 µs a row, measured when both had a `RETURNING`), the orphan row of `cells` inserted when it is not;
   * `false` for a task already final (a duplicate result).
   */
  complete(sql: Statements, cells: Cell[]): boolean {
    if (changed(sql.finish.run(...cells.slice(0, sql.finishArity)))) return true;
    if (sql.exists.get(cells[0] ?? null) !== undefined) return false;
    return changed(sql.complete.run(...cells));
  },
  cancel(sql: Statements, now: number, taskId: string): "cancelled" | "not_found" | "too_late" {
    if (changed(sql.cancel.run(now, taskId))) return "cancelled";
    return sql.exists.get(taskId) === undefined ? "not_found" : "too_late";
  },
  reopen(sql: Statements, taskId: string): void {
    sql.reopen.run(taskId);
  },
  remove(sql: Statements, taskId: string): void {
    sql.remove.run(taskId);
  },
  markPublished(sql: Statements, now: number, taskId: string): void {
    sql.markPublished.run(now, taskId);
  },
  markPublishedMany(sql: Statements, now: number, taskIds: string[]): void {
    for (let at = 0; at < taskIds.length; at += ROWS_PER_INSERT) {
      const chunk = taskIds.slice(at, at + ROWS_PER_INSERT);
      sql.markPublishedRows(chunk.length).run(now, ...chunk);
    }
  },
  prune(sql: Statements, cutoff: number, max: number): { removed: number; blobKeys: string[] } {
    const rows = sql.prune.all(cutoff, max);
    const blobKeys: string[] = [];
    const files = new Set<string>();
    for (const row of rows) {
      for (const column of ["payload_ref", "output_ref"]) {
        const key = optText(row, column);
        if (key !== null) blobKeys.push(key);
      }
      const file = optText(row, "file_ref");
      if (file !== null) files.add(file);
    }
    // An upload several tasks read goes with the last of them.
    for (const file of files) {
      if (sql.fileInUse.get(file) === undefined) blobKeys.push(file);
    }
    return { removed: rows.length, blobKeys };
  },
};

type Writes = typeof WRITES;
type Tail<T> = T extends [unknown, ...infer R] ? R : never;

/** The name of a write. */
export type WriteName = keyof Writes;
/** The arguments of a write, as they cross to the writer thread. */
export type WriteArgs<K extends WriteName> = Tail<Parameters<Writes[K]>>;
/** What a write gives back once committed. */
export type WriteResult<K extends WriteName> = ReturnType<Writes[K]>;
/** One write of a batch: its name and arguments. */
export type WriteCall = { [K in WriteName]: [K, WriteArgs<K>] }[WriteName];

/** A SQLite error as it crosses back: its message and, from a failed statement, SQLite's result code. */
export interface WriterError {
  readonly message: string;
  readonly errcode?: number;
}

/** The outcome of one write. */
export type WriteOutcome = { readonly ok: true; readonly value: unknown } | {
  readonly ok: false;
  readonly error: WriterError;
};

/** Opens the file (its schema already current); the main thread gives the INSERT's column list. */
export interface WriterOpen {
  readonly type: "open";
  readonly path: string;
  /** Whether to ask for WAL mode ({@linkcode configure}). */
  readonly wal: boolean;
  readonly columns: ColumnList;
  readonly placeholders: string;
}

/** A message to the writer thread: open, apply a batch, or close the connection. */
export type ToWriter = WriterOpen | { readonly type: "batch"; readonly writes: WriteCall[] } | {
  readonly type: "close";
};

/** The writer's answer to each message, in order. */
export type FromWriter =
  | { readonly type: "opened" }
  | { readonly type: "done"; readonly outcomes: WriteOutcome[] }
  | { readonly type: "closed" }
  | { readonly type: "failed"; readonly error: WriterError };

function toWriterError(err: unknown): WriterError {
  const errcode = (err as { errcode?: unknown } | null)?.errcode;
  const message = err instanceof Error ? err.message : String(err);
  return typeof errcode === "number" ? { message, errcode } : { message };
}

function transaction(db: DatabaseSync, sql: Statements, batch: readonly WriteCall[]): unknown[] {
  db.exec("BEGIN IMMEDIATE");
  try {
    const results = batch.map(([name, args]) =>
      (WRITES[name] as (sql: Statements, ...rest: unknown[]) => unknown)(sql, ...args)
    );
    db.exec("COMMIT");
    return results;
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw err;
  }
}

/**
 * Applies a batch in one transaction. When it fails, SQLite rolls it back and each write is applied alone,
 * so that only the faulty one fails.
 */
export function applyBatch(
  db: DatabaseSync,
  sql: Statements,
  batch: readonly WriteCall[],
): WriteOutcome[] {
  try {
    return transaction(db, sql, batch).map((value) => ({ ok: true, value }));
  } catch (err) {
    if (batch.length === 1) return [{ ok: false, error: toWriterError(err) }];
    return batch.map((write) => {
      try {
        return { ok: true, value: transaction(db, sql, [write])[0] };
      } catch (alone) {
        return { ok: false, error: toWriterError(alone) };
      }
    });
  }
}

/** The writer's message loop; messages come one at a time, each after the answer to the previous one. */
function serve(scope: {
  onmessage: ((event: MessageEvent<ToWriter>) => void) | null;
  postMessage(message: FromWriter): void;
}): void {
  let db: DatabaseSync | undefined;
  let sql: Statements | undefined;
  scope.onmessage = ({ data }) => {
    switch (data.type) {
      case "open":
        try {
          db = new DatabaseSync(data.path);
          configure(db, data.wal);
          sql = prepareWrites(db, data.columns, data.placeholders);
          scope.postMessage({ type: "opened" });
        } catch (err) {
          db?.close();
          db = undefined;
          scope.postMessage({ type: "failed", error: toWriterError(err) });
        }
        return;
      case "batch":
        if (db === undefined || sql === undefined) {
          const error = { message: "Task store writer is not open" };
          scope.postMessage({
            type: "done",
            outcomes: data.writes.map(() => ({ ok: false, error })),
          });
          return;
        }
        scope.postMessage({ type: "done", outcomes: applyBatch(db, sql, data.writes) });
        return;
      case "close":
        try {
          db?.close();
          db = undefined;
          scope.postMessage({ type: "closed" });
        } catch (err) {
          scope.postMessage({ type: "failed", error: toWriterError(err) });
        }
        return;
      default: {
        const never: never = data;
        throw new TypeError(`Cannot handle writer message: ${JSON.stringify(never)}`);
      }
    }
  };
}

if (import.meta.main) serve(self as unknown as Parameters<typeof serve>[0]);
