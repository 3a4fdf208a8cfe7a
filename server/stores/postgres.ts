/**
 * The PostgreSQL task store: the only file that imports `pg`. Task records shared by every server.
 *
 * A pool of connections; the schema is brought up to date at start-up from the numbered files in
 * `migrations/postgres/`, under an advisory lock. Writes are queued and applied together once per
 * event-loop turn — consecutive writes of one kind in one statement, the whole batch in one transaction —
 * and each caller's promise resolves only after COMMIT. Reads go straight to the pool. Every failure of
 * PostgreSQL or of the network becomes `STORE_UNAVAILABLE`, with the original as its cause.
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import type { PoolClient } from "pg";
import { setImmediate } from "node:timers";
import { ColmenaError, type WireError } from "../../shared/errors.ts";
import * as log from "../../shared/log.ts";
import type { CancelOutcome, NewTask, TaskPage, TaskQuery, TaskStore } from "../../shared/ports.ts";
import type { TaskView } from "../../shared/protocol.ts";
import type { ResultMessage, StartedNotice } from "../../shared/queue_messages.ts";
import { readMigrations } from "./migrations.ts";
import {
  type Cell,
  COLUMN_NAMES,
  recordCells,
  recordFromRow,
  selectList,
  TASK_COLUMNS,
} from "./columns.ts";
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
  toIso,
  toMillis,
  toSubmission,
  toTaskView,
} from "./records.ts";

const FINAL = "('succeeded', 'failed', 'cancelled')";

/** Options of {@linkcode openPostgresTaskStore}. */
export interface PostgresStoreOptions {
  /** The schema that holds the tables; created when missing. @defaultValue `"public"` */
  schema?: string;
  /** Most connections the pool opens. @defaultValue `10` */
  maxConnections?: number;
  /** How long to wait for a connection before the call fails with `STORE_UNAVAILABLE`. @defaultValue `5000` */
  connectTimeoutMs?: number;
  /**
   * How long one statement may wait for PostgreSQL's answer before it fails with `STORE_UNAVAILABLE` and its
   * connection is dropped: a database (or network) that stalls without closing the connection holds the
   * writes queued behind it for at most this long. @defaultValue `10000`
   */
  queryTimeoutMs?: number;
}

/** Records as one parameter per column (an array each), for `INSERT … SELECT FROM unnest(…)`. */
function columnArrays(records: readonly TaskRecord[]): Cell[][] {
  const arrays: Cell[][] = TASK_COLUMNS.map(() => []);
  for (const record of records) {
    recordCells(record, "postgres").forEach((cell, i) => arrays[i]?.push(cell));
  }
  return arrays;
}

/** `INSERT INTO <table> (…) SELECT * FROM unnest($1::text[], …)`: one array parameter per column. */
function insertUnnest(table: string): string {
  const arrays = TASK_COLUMNS.map((each, i) => `$${i + 1}::${each.types.postgres}[]`);
  return `INSERT INTO ${table} AS t (${COLUMN_NAMES}) SELECT * FROM unnest(${arrays.join(", ")})`;
}

const SELECT_COLUMNS = selectList("postgres");

type TaskRow = Record<string, unknown>;

function fromRow(row: TaskRow): TaskRecord {
  return recordFromRow(row, "postgres");
}

/** A failure of PostgreSQL or of the network becomes `STORE_UNAVAILABLE`, with the original as its cause. */
function storeError(err: unknown): ColmenaError {
  if (err instanceof ColmenaError) return err;
  return new ColmenaError("STORE_UNAVAILABLE", { cause: err });
}

function closedError(): ColmenaError {
  return new ColmenaError("STORE_UNAVAILABLE", { cause: new Error("Task store is closed") });
}

/** Whether a task id can be stored at all: PostgreSQL text holds no NUL, so such an id is never found. */
function storableId(taskId: string): boolean {
  return !taskId.includes("\u0000");
}

function checkSchema(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new RangeError(
      `Cannot use schema "${schema}": use lowercase letters, digits and "_", at most 63`,
    );
  }
  return schema;
}

interface Settle<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

type Write =
  | { kind: "create"; record: TaskRecord; settle: Settle<{ taskId: string; created: boolean }> }
  | {
    kind: "started";
    taskId: string;
    worker: string;
    startedAt: string;
    attempt: number;
    settle: Settle<void>;
  }
  | { kind: "retrying"; taskId: string; code: string; message: string; settle: Settle<void> }
  | { kind: "complete"; record: TaskRecord; settle: Settle<boolean> }
  | { kind: "cancel"; taskId: string; now: string; settle: Settle<CancelOutcome> }
  | { kind: "remove"; taskId: string; settle: Settle<void> }
  | { kind: "published"; taskId: string; settle: Settle<void> }
  | { kind: "reopen"; taskId: string; settle: Settle<void> }
  | {
    kind: "prune";
    before: string;
    limit: number;
    settle: Settle<{ removed: number; blobKeys: string[] }>;
  };

type WriteOf<K extends Write["kind"]> = Extract<Write, { kind: K }>;

/** Resolutions to hand out once the transaction that made them true has committed. */
type Outcomes = (() => void)[];

/** Splits a batch into runs of consecutive writes of one kind, keeping their order. */
function runsOf(batch: readonly Write[]): Write[][] {
  const runs: Write[][] = [];
  for (const write of batch) {
    const run = runs.at(-1);
    if (run !== undefined && run[0]?.kind === write.kind) run.push(write);
    else runs.push([write]);
  }
  return runs;
}

/** The SELECT of a `list` page from `table` and its parameters; throws what the query's values fail with. */
export function listStatement(
  table: string,
  query: TaskQuery,
): { text: string; values: unknown[] } {
  const limit = checkListLimit(query.limit);
  const where: string[] = [];
  const values: unknown[] = [];
  const param = (value: unknown) => {
    values.push(value);
    return `$${values.length}`;
  };
  if (query.statuses !== undefined) where.push(`status = ANY(${param(query.statuses)}::text[])`);
  if (query.taskType !== undefined) {
    where.push(`task_type = ${param(storableText(query.taskType))}`);
  }
  if (query.clientKind !== undefined) where.push(`client_kind = ${param(query.clientKind)}`);
  if (query.clientName !== undefined) {
    where.push(`client_name = ${param(storableText(query.clientName))}`);
  }
  if (query.owner !== undefined) where.push(`owner = ${param(storableText(query.owner))}`);
  if (query.since !== undefined) {
    where.push(`submitted_at >= ${param(toIso(toMillis(query.since)))}::timestamptz`);
  }
  if (query.until !== undefined) {
    where.push(`submitted_at < ${param(toIso(toMillis(query.until)))}::timestamptz`);
  }
  if (query.cursor !== undefined) {
    const after = decodeCursor(query.cursor);
    where.push(
      `(submitted_at, task_id) < (${param(toIso(after.submittedAt))}::timestamptz, ${
        param(after.taskId)
      }::text)`,
    );
  }
  const text = `SELECT ${SELECT_COLUMNS} FROM ${table}
     ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
     ORDER BY submitted_at DESC, task_id DESC LIMIT ${param(limit + 1)}`;
  return { text, values };
}

/**
 * The statement that prunes `table`: its WHERE term on status is word for word the predicate of the partial
 * index `tasks_finished`. SKIP LOCKED: two servers pruning at once take different rows instead of waiting
 * on each other.
 */
export function pruneSql(table: string): string {
  return `DELETE FROM ${table} WHERE task_id IN (
         SELECT task_id FROM ${table}
         WHERE status IN ${FINAL} AND finished_at < $1::timestamptz
         ORDER BY finished_at LIMIT $2
         FOR UPDATE SKIP LOCKED)
       RETURNING payload_ref AS "payloadRef", file_ref AS "fileRef", output_ref AS "outputRef"`;
}

/**
 * Keeps task records in PostgreSQL, shared by every server that points at the same database and schema.
 * Open it with {@linkcode openPostgresTaskStore}.
 */
export class PostgresTaskStore implements TaskStore {
  /** Every server of a deployment writes here. */
  readonly shared = true;
  readonly #pool: pg.Pool;
  readonly #table: string;
  #queue: Write[] = [];
  #scheduled = false;
  #flushing: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  /** Wraps a pool whose schema is current; {@linkcode openPostgresTaskStore} does both. */
  constructor(pool: pg.Pool, schema: string) {
    this.#pool = pool;
    this.#table = `"${checkSchema(schema)}".tasks`;
  }

  create(task: NewTask): Promise<{ taskId: string; created: boolean }> {
    return this.#enqueue((settle) => ({ kind: "create", record: newTaskRecord(task), settle }));
  }

  /** Each task through {@linkcode create}: the creates of one turn go in one statement anyway. */
  async createMany(tasks: readonly NewTask[]): Promise<{ taskId: string; created: boolean }[]> {
    return await Promise.all(tasks.map((task) => this.create(task)));
  }

  markStarted(notice: StartedNotice): Promise<void> {
    return this.#enqueue((settle) => ({
      kind: "started",
      taskId: notice.taskId,
      worker: storableText(notice.worker),
      startedAt: toIso(toMillis(notice.startedAt)),
      attempt: notice.attempt,
      settle,
    }));
  }

  markRetrying(taskId: string, error: WireError): Promise<void> {
    return this.#enqueue((settle) => ({
      kind: "retrying",
      taskId,
      code: error.code,
      message: storableText(error.message),
      settle,
    }));
  }

  complete(result: ResultMessage): Promise<boolean> {
    return this.#enqueue((settle) => ({ kind: "complete", record: orphanRecord(result), settle }));
  }

  cancel(taskId: string): Promise<CancelOutcome> {
    if (!storableId(taskId)) return Promise.resolve("not_found");
    return this.#enqueue((settle) => ({
      kind: "cancel",
      taskId,
      now: toIso(Date.now()),
      settle,
    }));
  }

  remove(taskId: string): Promise<void> {
    if (!storableId(taskId)) return Promise.resolve();
    return this.#enqueue((settle) => ({ kind: "remove", taskId, settle }));
  }

  markPublished(taskId: string): Promise<void> {
    if (!storableId(taskId)) return Promise.resolve();
    return this.#enqueue((settle) => ({ kind: "published", taskId, settle }));
  }

  async markPublishedMany(taskIds: readonly string[]): Promise<void> {
    await Promise.all(taskIds.map((taskId) => this.markPublished(taskId)));
  }

  async published(taskId: string): Promise<boolean> {
    if (this.#closed) throw closedError();
    if (!storableId(taskId)) return false;
    const rows = await this.#query<{ published: boolean }>(
      `SELECT published_at IS NOT NULL AS published FROM ${this.#table} WHERE task_id = $1`,
      [taskId],
    );
    return rows[0]?.published ?? false;
  }

  reopen(taskId: string): Promise<void> {
    if (!storableId(taskId)) return Promise.resolve();
    return this.#enqueue((settle) => ({ kind: "reopen", taskId, settle }));
  }

  prune(before: string, limit: number): Promise<{ removed: number; blobKeys: string[] }> {
    return this.#enqueue((settle) => ({
      kind: "prune",
      before: toIso(toMillis(before)),
      limit: checkPruneLimit(limit),
      settle,
    }));
  }

  async filesInUse(refs: readonly string[]): Promise<Set<string>> {
    if (this.#closed) throw closedError();
    if (refs.length === 0) return new Set();
    const rows = await this.#query<{ fileRef: string }>(
      `SELECT DISTINCT file_ref AS "fileRef" FROM ${this.#table} WHERE file_ref = ANY($1::text[])`,
      [[...refs]],
    );
    return new Set(rows.map((row) => row.fileRef));
  }

  async matchIds(prefix: string, limit: number): Promise<string[]> {
    if (this.#closed) throw closedError();
    if (!isTaskIdPrefix(prefix)) return [];
    const [low, high] = prefixRange(prefix);
    // task_id is COLLATE "C": byte order, so the range is exactly the ids with this prefix, read off the key.
    const rows = await this.#query<{ taskId: string }>(
      `SELECT task_id AS "taskId" FROM ${this.#table}
       WHERE task_id >= $1 AND task_id < $2 ORDER BY task_id LIMIT $3`,
      [low, high, limit],
    );
    return rows.map((row) => row.taskId);
  }

  async get(taskId: string): Promise<TaskView | undefined> {
    if (this.#closed) throw closedError();
    if (!storableId(taskId)) return undefined;
    const rows = await this.#query<TaskRow>(
      `SELECT ${SELECT_COLUMNS} FROM ${this.#table} WHERE task_id = $1`,
      [taskId],
    );
    const row = rows[0];
    return row === undefined ? undefined : toTaskView(fromRow(row));
  }

  async submission(taskId: string): Promise<NewTask | undefined> {
    if (this.#closed) throw closedError();
    if (!storableId(taskId)) return undefined;
    const rows = await this.#query<TaskRow>(
      `SELECT ${selectList("postgres", true)} FROM ${this.#table} WHERE task_id = $1`,
      [taskId],
    );
    const row = rows[0];
    return row === undefined ? undefined : toSubmission(recordFromRow(row, "postgres"));
  }

  async list(query: TaskQuery): Promise<TaskPage> {
    if (this.#closed) throw closedError();
    const limit = checkListLimit(query.limit);
    const { text, values } = listStatement(this.#table, query);
    const rows = await this.#query<TaskRow>(text, values);
    const records = rows.map(fromRow);
    const page = records.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map(toTaskView),
      nextCursor: records.length > limit && last !== undefined ? encodeCursor(last) : null,
    };
  }

  /** Applies the writes still queued, then closes the pool; later calls reject with `STORE_UNAVAILABLE`. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      this.#startFlush();
      while (this.#flushing !== undefined) await this.#flushing;
      await this.#pool.end();
    })();
    return this.#closing;
  }

  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    try {
      return (await this.#pool.query<R>(sql, params)).rows;
    } catch (err) {
      throw storeError(err);
    }
  }

  /**
   * Queues a write for this turn's batch. `make` runs now, so bad input rejects at once without touching
   * the batch.
   */
  #enqueue<T>(make: (settle: Settle<T>) => Write): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    try {
      this.#queue.push(make({ resolve, reject }));
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#flushing === undefined) this.#schedule();
    return promise;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#startFlush();
    });
  }

  /**
   * Applies batches one after the other until the queue is empty: what arrives while one batch is being
   * written becomes the next batch, so one transaction is in flight at a time and writes keep their order.
   */
  #startFlush(): void {
    if (this.#flushing !== undefined) return;
    this.#flushing = (async () => {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        try {
          await this.#applyBatch(batch);
        } catch (err) {
          // Not expected (failures are settled per write inside); never leave a caller waiting for ever.
          for (const write of batch) write.settle.reject(storeError(err));
        }
      }
    })().finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0) this.#schedule();
    });
  }

  async #applyBatch(batch: Write[]): Promise<void> {
    let client: PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      for (const write of batch) write.settle.reject(storeError(err));
      return;
    }
    let broken: Error | undefined;
    try {
      const outcome = await this.#transaction(client, batch);
      if (outcome.ok) {
        for (const resolve of outcome.outcomes) resolve();
        return;
      }
      // A statement failed before COMMIT and the connection is fine: the batch was rolled back, so apply each
      // write alone and fail only the faulty one. Past that point the outcome is unknown: fail them all.
      if (outcome.beforeCommit && batch.length > 1 && outcome.error instanceof pg.DatabaseError) {
        for (const write of batch) {
          const alone = await this.#transaction(client, [write]);
          if (alone.ok) { for (const resolve of alone.outcomes) resolve(); }
          else {
            write.settle.reject(storeError(alone.error));
            if (!(alone.error instanceof pg.DatabaseError)) broken = alone.error;
          }
        }
        return;
      }
      if (!(outcome.error instanceof pg.DatabaseError)) broken = outcome.error;
      for (const write of batch) write.settle.reject(storeError(outcome.error));
    } finally {
      // A connection that failed outside a statement is dropped rather than reused.
      client.release(broken ?? false);
    }
  }

  async #transaction(
    client: PoolClient,
    batch: readonly Write[],
  ): Promise<
    { ok: true; outcomes: Outcomes } | { ok: false; error: Error; beforeCommit: boolean }
  > {
    // A single write is one statement (or a write and a read): it commits on its own.
    const single = batch.length === 1;
    let beforeCommit = true;
    try {
      if (!single) await client.query("BEGIN");
      const outcomes: Outcomes = [];
      for (const run of runsOf(batch)) outcomes.push(...await this.#applyRun(client, run));
      beforeCommit = single;
      if (!single) await client.query("COMMIT");
      return { ok: true, outcomes };
    } catch (err) {
      if (!single && beforeCommit) await client.query("ROLLBACK").catch(() => {});
      const error = err instanceof Error ? err : new Error(String(err));
      return { ok: false, error, beforeCommit: beforeCommit && !single };
    }
  }

  #applyRun(client: PoolClient, run: Write[]): Promise<Outcomes> {
    const kind = run[0]?.kind;
    const of = <K extends Write["kind"]>(k: K) => run.filter((w): w is WriteOf<K> => w.kind === k);
    switch (kind) {
      case "create":
        return this.#applyCreates(client, of("create"));
      case "started":
        return this.#applyStarted(client, of("started"));
      case "retrying":
        return this.#applyRetrying(client, of("retrying"));
      case "complete":
        return this.#applyCompletes(client, of("complete"));
      case "cancel":
        return this.#applyEach(of("cancel"), (write) => this.#cancelOne(client, write));
      case "remove":
        return this.#applyEach(of("remove"), async (write) => {
          await client.query(`DELETE FROM ${this.#table} WHERE task_id = $1`, [write.taskId]);
          return () => write.settle.resolve();
        });
      case "published":
        return this.#applyPublished(client, of("published"));
      case "reopen":
        return this.#applyEach(of("reopen"), async (write) => {
          await client.query(
            `UPDATE ${this.#table} SET status = 'queued', attempts = 0, worker = NULL,
               started_at = NULL, finished_at = NULL, duration_ms = NULL, output = NULL,
               output_ref = NULL, error_code = NULL, error_message = NULL
             WHERE task_id = $1 AND status IN ${FINAL}`,
            [write.taskId],
          );
          return () => write.settle.resolve();
        });
      case "prune":
        return this.#applyEach(of("prune"), (write) => this.#pruneOne(client, write));
      case undefined:
        return Promise.resolve([]);
      default: {
        const unknown: never = kind;
        throw new TypeError(`Cannot apply write of kind "${unknown}"`);
      }
    }
  }

  async #applyEach<W extends Write>(
    writes: W[],
    apply: (write: W) => Promise<() => void>,
  ): Promise<Outcomes> {
    const outcomes: Outcomes = [];
    for (const write of writes) outcomes.push(await apply(write));
    return outcomes;
  }

  /** One `INSERT … SELECT FROM unnest(…)` for the whole run, then one read of the idempotency keys it hit. */
  async #applyCreates(client: PoolClient, writes: WriteOf<"create">[]): Promise<Outcomes> {
    const records = writes.map((write) => write.record);
    const inserted = await client.query<{ taskId: string }>(
      `${insertUnnest(this.#table)}
       ON CONFLICT DO NOTHING
       RETURNING task_id AS "taskId"`,
      columnArrays(records),
    );
    const created = new Set(inserted.rows.map((row) => row.taskId));
    const keyed = records.filter((record) =>
      record.idempotencyKey !== null && !created.has(record.taskId)
    );
    const firstByKey = new Map<string, string>();
    if (keyed.length > 0) {
      const found = await client.query<{ owner: string; key: string; taskId: string }>(
        `SELECT t.owner AS owner, t.idempotency_key AS key, t.task_id AS "taskId"
         FROM ${this.#table} t
         JOIN unnest($1::text[], $2::text[]) AS k(owner, idempotency_key)
           ON t.owner = k.owner AND t.idempotency_key = k.idempotency_key`,
        [keyed.map((record) => record.owner), keyed.map((record) => record.idempotencyKey)],
      );
      for (const row of found.rows) {
        firstByKey.set(JSON.stringify([row.owner, row.key]), row.taskId);
      }
    }
    return writes.map((write) => {
      const { record } = write;
      let result: { taskId: string; created: boolean };
      if (created.delete(record.taskId)) result = { taskId: record.taskId, created: true };
      else {
        const key = JSON.stringify([record.owner, record.idempotencyKey]);
        const first = record.idempotencyKey === null ? undefined : firstByKey.get(key);
        result = { taskId: first ?? record.taskId, created: false };
      }
      return () => write.settle.resolve(result);
    });
  }

  /** One `UPDATE … FROM unnest(…)`; several notices for one task merge as if applied in order. */
  async #applyPublished(client: PoolClient, writes: WriteOf<"published">[]): Promise<Outcomes> {
    await client.query(
      `UPDATE ${this.#table} SET published_at = now()
       WHERE task_id = ANY($1::text[]) AND published_at IS NULL`,
      [writes.map((w) => w.taskId)],
    );
    return writes.map((w) => () => w.settle.resolve());
  }

  async #applyStarted(client: PoolClient, writes: WriteOf<"started">[]): Promise<Outcomes> {
    const merged = new Map<string, { worker: string; startedAt: string; attempt: number }>();
    for (const write of writes) {
      const previous = merged.get(write.taskId);
      merged.set(write.taskId, {
        worker: write.worker,
        startedAt: write.startedAt,
        attempt: Math.max(previous?.attempt ?? 0, write.attempt),
      });
    }
    const entries = [...merged];
    await client.query(
      `UPDATE ${this.#table} AS t
       SET status = 'running', worker = v.worker, started_at = v.started_at,
           attempts = GREATEST(t.attempts, v.attempt)
       FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::integer[])
         AS v(task_id, worker, started_at, attempt)
       WHERE t.task_id = v.task_id AND t.status NOT IN ${FINAL}`,
      [
        entries.map(([taskId]) => taskId),
        entries.map(([, v]) => v.worker),
        entries.map(([, v]) => v.startedAt),
        entries.map(([, v]) => v.attempt),
      ],
    );
    return writes.map((write) => () => write.settle.resolve());
  }

  /** One `UPDATE … FROM unnest(…)`; for one task repeated, the last error stays. */
  async #applyRetrying(client: PoolClient, writes: WriteOf<"retrying">[]): Promise<Outcomes> {
    const merged = new Map(writes.map((write) => [write.taskId, write]));
    const entries = [...merged.values()];
    await client.query(
      `UPDATE ${this.#table} AS t
       SET status = 'queued', error_code = v.code, error_message = v.message
       FROM unnest($1::text[], $2::text[], $3::text[]) AS v(task_id, code, message)
       WHERE t.task_id = v.task_id AND t.status NOT IN ${FINAL}`,
      [
        entries.map((write) => write.taskId),
        entries.map((write) => write.code),
        entries.map((write) => write.message),
      ],
    );
    return writes.map((write) => () => write.settle.resolve());
  }

  /**
   * One upsert for the whole run: a result for an unknown task inserts its record, one for a task not yet
   * final updates it, one for a final task changes nothing. A task repeated in the run is final after its
   * first result, so the repeats are `false`.
   */
  async #applyCompletes(client: PoolClient, writes: WriteOf<"complete">[]): Promise<Outcomes> {
    const first = new Map<string, TaskRecord>();
    for (const write of writes) {
      if (!first.has(write.record.taskId)) first.set(write.record.taskId, write.record);
    }
    const updated = await client.query<{ taskId: string }>(
      `${insertUnnest(this.#table)}
       ON CONFLICT (task_id) DO UPDATE SET
         status = excluded.status, worker = excluded.worker, started_at = excluded.started_at,
         finished_at = excluded.finished_at, duration_ms = excluded.duration_ms,
         attempts = GREATEST(t.attempts, excluded.attempts), output = excluded.output,
         output_ref = excluded.output_ref,
         error_code = excluded.error_code, error_message = excluded.error_message
       WHERE t.status NOT IN ${FINAL}
       RETURNING task_id AS "taskId"`,
      columnArrays([...first.values()]),
    );
    const recorded = new Set(updated.rows.map((row) => row.taskId));
    return writes.map((write) => {
      const value = recorded.delete(write.record.taskId);
      return () => write.settle.resolve(value);
    });
  }

  async #cancelOne(client: PoolClient, write: WriteOf<"cancel">): Promise<() => void> {
    const { rows } = await client.query<{ cancelled: boolean; found: boolean }>(
      `WITH cancelled AS (
         UPDATE ${this.#table} SET status = 'cancelled', finished_at = $2::timestamptz
         WHERE task_id = $1 AND status = 'queued' RETURNING 1)
       SELECT EXISTS (SELECT 1 FROM cancelled) AS cancelled,
              EXISTS (SELECT 1 FROM ${this.#table} WHERE task_id = $1) AS found`,
      [write.taskId, write.now],
    );
    const row = rows[0];
    const outcome: CancelOutcome = row?.cancelled
      ? "cancelled"
      : row?.found
      ? "too_late"
      : "not_found";
    return () => write.settle.resolve(outcome);
  }

  async #pruneOne(client: PoolClient, write: WriteOf<"prune">): Promise<() => void> {
    const { rows } = await client.query<
      { payloadRef: string | null; fileRef: string | null; outputRef: string | null }
    >(pruneSql(this.#table), [write.before, write.limit]);
    const blobKeys: string[] = [];
    const files = new Set<string>();
    for (const row of rows) {
      for (const key of [row.payloadRef, row.outputRef]) {
        if (key !== null) blobKeys.push(key);
      }
      if (row.fileRef !== null) files.add(row.fileRef);
    }
    if (files.size > 0) {
      // An upload several tasks read goes with the last of them.
      const { rows: inUse } = await client.query<{ fileRef: string }>(
        `SELECT DISTINCT file_ref AS "fileRef" FROM ${this.#table} WHERE file_ref = ANY($1::text[])`,
        [[...files]],
      );
      for (const { fileRef } of inUse) files.delete(fileRef);
      blobKeys.push(...files);
    }
    return () => write.settle.resolve({ removed: rows.length, blobKeys });
  }
}

/**
 * Creates the schema when missing and applies the migrations it has not recorded in `colmena_migrations`,
 * each in its own transaction, while holding an advisory lock for that schema: servers starting together
 * migrate one after the other, and the later ones find nothing left to do.
 */
async function migrate(pool: pg.Pool, schema: string): Promise<void> {
  const files = await readMigrations("postgres");
  const client = await pool.connect();
  const lockArgs = ["colmena_migrations", schema];
  try {
    await client.query("SELECT pg_advisory_lock(hashtext($1), hashtext($2))", lockArgs);
    try {
      const exists = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
      if (exists.rowCount === 0) await client.query(`CREATE SCHEMA "${schema}"`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS "${schema}".colmena_migrations (
           version integer PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ version: number }>(
        `SELECT version FROM "${schema}".colmena_migrations`,
      );
      const applied = new Set(rows.map((row) => row.version));
      for (const file of files) {
        if (applied.has(file.version)) continue;
        await client.query("BEGIN");
        try {
          await client.query(`SET LOCAL search_path TO "${schema}"`);
          await client.query(file.sql);
          await client.query(
            `INSERT INTO "${schema}".colmena_migrations (version, name) VALUES ($1, $2)`,
            [file.version, file.name],
          );
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK").catch(() => {});
          throw err;
        }
      }
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", lockArgs);
    }
  } finally {
    client.release();
  }
}

function createPool(url: string, options: PostgresStoreOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    query_timeout: options.queryTimeoutMs ?? 10_000,
    keepAlive: true,
    application_name: "colmena",
  });
  // An idle connection that fails is dropped by the pool and replaced on the next query; without this
  // listener its error would end the process.
  pool.on("error", (err) => {
    log.warn(`Se perdió una conexión inactiva con PostgreSQL: ${err.message}`);
  });
  return pool;
}

/**
 * Connects to PostgreSQL at `url`, brings the schema up to date and returns the store. Rejects with
 * `STORE_UNAVAILABLE` when the database cannot be reached or migrated.
 */
export async function openPostgresTaskStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresTaskStore> {
  const schema = checkSchema(options.schema ?? "public");
  const pool = createPool(url, options);
  try {
    await migrate(pool, schema);
  } catch (err) {
    await pool.end().catch(() => {});
    // A missing permission is a deployment mistake, not an outage: it goes up as it is, naming the flag.
    throw err instanceof Deno.errors.NotCapable ? err : storeError(err);
  }
  return new PostgresTaskStore(pool, schema);
}

/** Drops a schema and everything in it (tests isolate themselves in one); refuses `public`. */
export async function dropPostgresSchema(url: string, schema: string): Promise<void> {
  if (checkSchema(schema) === "public") {
    throw new RangeError('Cannot drop schema "public": only a schema of its own can be dropped');
  }
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } catch (err) {
    throw storeError(err);
  } finally {
    await client.end().catch(() => {});
  }
}
