/**
 * The PostgreSQL task store: the only file that imports `pg`. Task records shared by every server.
 *
 * A pool of connections; the schema is brought up to date at start-up from the numbered files in
 * `migrations/postgres/`, under an advisory lock. Writes are queued and applied together once per
 * event-loop turn — the writes of each kind in one multi-row named statement (see {@linkcode Segment}), the
 * whole batch in one transaction whose BEGIN, statements and COMMIT travel pipelined in one round trip — and
 * each caller's promise resolves only after COMMIT. Reads go straight to the pool. Every failure of
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
  COLUMN_NAMES,
  recordFromRow,
  recordsJson,
  selectList,
  selectRecordset,
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
  UNKNOWN_CLIENT,
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

/**
 * `INSERT INTO <table> (…) SELECT … FROM json_to_recordset($1::json)`: the records as one JSON parameter
 * ({@linkcode recordsJson}). Cheaper to build than one array parameter per column, for the same work in
 * PostgreSQL (docs/benchmarks.md, "el almacén PostgreSQL, un parámetro JSON").
 */
function insertRecordset(table: string): string {
  return `INSERT INTO ${table} AS t (${COLUMN_NAMES}) ${selectRecordset("$1::json")}`;
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

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** One statement of a batch, and the resolutions its answer gives once the batch has committed. */
interface Step {
  readonly query: pg.QueryConfig;
  /** Whether `finish` may send statements of its own: then COMMIT waits for it instead of being pipelined. */
  readonly followUp: boolean;
  // deno-lint-ignore no-explicit-any
  finish(result: pg.QueryResult<any>, client: PoolClient): Outcomes | Promise<Outcomes>;
}

/** A task's result in a {@linkcode Segment}, its repeats, and the notices it makes moot. */
interface Completion {
  /** The first result's record. */
  readonly record: TaskRecord;
  readonly writes: WriteOf<"complete">[];
  readonly absorbed: (WriteOf<"started"> | WriteOf<"retrying">)[];
}

type SegmentWrite = WriteOf<"create" | "published" | "started" | "retrying" | "complete">;

/** Where each kind of write is applied within a segment: creates first, results last. */
const STAGE: Readonly<Record<SegmentWrite["kind"], number>> = {
  create: 0,
  published: 1,
  started: 2,
  retrying: 3,
  complete: 4,
};

/**
 * Writes of a batch applied as one multi-row statement per kind, in the order of {@linkcode STAGE}, with the
 * same effect as one at a time in call order. Writes of different tasks commute; for one task, a write joins
 * only when it comes at or after the stage of the task's writes already in (otherwise the batch starts a new
 * segment), with two merges:
 * - a result makes the start and retry notices of its task before it moot (it sets every column they set,
 *   and a final task takes no notice), so they go in no statement and resolve with it;
 * - a notice after a result of its task changes nothing (the task is final after any result), likewise.
 */
export class Segment {
  readonly creates: WriteOf<"create">[] = [];
  readonly published: WriteOf<"published">[] = [];
  readonly started: Map<string, WriteOf<"started">[]> = new Map();
  readonly retrying: Map<string, WriteOf<"retrying">[]> = new Map();
  readonly completes: Map<string, Completion> = new Map();
  readonly #stage = new Map<string, number>();

  /** Adds `write`; `false`, adding nothing, when it must wait for a later segment. */
  add(write: SegmentWrite): boolean {
    const taskId = write.kind === "create" || write.kind === "complete"
      ? write.record.taskId
      : write.taskId;
    const seen = this.#stage.get(taskId);
    const completion = this.completes.get(taskId);
    switch (write.kind) {
      case "create":
        if (seen !== undefined && seen !== STAGE.create) return false;
        this.creates.push(write);
        break;
      case "published":
        // After a result, which may have inserted the record, marking it must wait.
        if (completion !== undefined) return false;
        this.published.push(write);
        break;
      case "started":
      case "retrying":
        if (completion !== undefined) {
          completion.absorbed.push(write);
          return true;
        }
        // A start after a retry of the same task must not be applied before it.
        if (write.kind === "started" && seen === STAGE.retrying) return false;
        pushTo(write.kind === "started" ? this.started : this.retrying, taskId, write);
        break;
      case "complete": {
        if (completion !== undefined) {
          completion.writes.push(write);
          break;
        }
        const started = this.started.get(taskId) ?? [];
        const retrying = this.retrying.get(taskId) ?? [];
        const attempts = Math.max(write.record.attempts, ...started.map((w) => w.attempt));
        // Only a start of an attempt the result also counts is moot: a later one would raise the attempts.
        if (attempts !== write.record.attempts) return false;
        this.started.delete(taskId);
        this.retrying.delete(taskId);
        this.completes.set(taskId, {
          record: write.record,
          writes: [write],
          absorbed: [...started, ...retrying],
        });
        break;
      }
    }
    this.#stage.set(taskId, Math.max(seen ?? 0, STAGE[write.kind]));
    return true;
  }
}

function pushTo<W>(map: Map<string, W[]>, key: string, value: W): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
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
  /** A create without a key completes the record a result from another server left first. */
  readonly createCompletesOrphans = true;
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
    // A checked-out client's connection error is not the pool's to catch: without this listener, a connection
    // that dies under a batch would end the process. Its queries fail with the error, and it is dropped.
    const onError = (err: Error) => {
      broken ??= err;
    };
    client.on("error", onError);
    try {
      const outcome = await this.#transaction(client, batch);
      if (outcome.ok) {
        for (const resolve of outcome.outcomes) resolve();
        return;
      }
      // A statement failed before COMMIT and the connection is fine: the batch was rolled back. It goes again
      // once with the keyless creates that complete orphan records (a result from another server written
      // before its create, the usual failure), then each write alone, failing only the faulty one. Past
      // COMMIT the outcome is unknown: fail them all.
      if (outcome.beforeCommit && batch.length > 1 && outcome.error instanceof pg.DatabaseError) {
        const careful = await this.#transaction(client, batch, true);
        if (careful.ok) {
          for (const resolve of careful.outcomes) resolve();
          return;
        }
        if (!careful.beforeCommit || !(careful.error instanceof pg.DatabaseError)) {
          if (!(careful.error instanceof pg.DatabaseError)) broken = careful.error;
          for (const write of batch) write.settle.reject(storeError(careful.error));
          return;
        }
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
      client.off("error", onError);
      // A connection that failed outside a statement is dropped rather than reused.
      client.release(broken ?? false);
    }
  }

  async #transaction(
    client: PoolClient,
    batch: readonly Write[],
    careful = false,
  ): Promise<
    { ok: true; outcomes: Outcomes } | { ok: false; error: Error; beforeCommit: boolean }
  > {
    const steps = this.#plan(batch, careful);
    const [only] = steps;
    if (only !== undefined && steps.length === 1) {
      // One statement commits on its own; it changed nothing when PostgreSQL refused it.
      let result: pg.QueryResult;
      try {
        result = await client.query(only.query);
      } catch (err) {
        return { ok: false, error: asError(err), beforeCommit: err instanceof pg.DatabaseError };
      }
      try {
        return { ok: true, outcomes: await only.finish(result, client) };
      } catch (err) {
        return { ok: false, error: asError(err), beforeCommit: false };
      }
    }
    // Pipelined: BEGIN, every statement and, unless a step reads after its statement, COMMIT leave in one
    // write and come back in one read. A statement PostgreSQL refuses aborts the transaction, and the COMMIT
    // behind it then answers ROLLBACK.
    const followUp = steps.some((step) => step.followUp);
    const begin = client.query("BEGIN");
    const sent = steps.map((step) => client.query(step.query));
    const commit = followUp ? undefined : client.query("COMMIT");
    // Each is awaited below, or left behind a failure that is reported on its own.
    for (const each of [begin, ...sent, commit]) each?.catch(() => {});
    try {
      await begin;
      const outcomes: Outcomes = [];
      for (const [i, step] of steps.entries()) {
        outcomes.push(...await step.finish(await sent[i]!, client));
      }
      const committed = await (commit ?? client.query("COMMIT"));
      if (committed.command !== "COMMIT") {
        throw new Error(`Cannot commit the batch: PostgreSQL answered ${committed.command}`);
      }
      return { ok: true, outcomes };
    } catch (err) {
      const error = asError(err);
      if (commit === undefined) {
        const rolledBack = await client.query("ROLLBACK").then(() => true, () => false);
        return { ok: false, error, beforeCommit: rolledBack };
      }
      // The pipelined COMMIT tells whether the failure rolled the batch back.
      const answer = await commit.then((r) => r.command, () => undefined);
      return { ok: false, error, beforeCommit: answer === "ROLLBACK" };
    }
  }

  /**
   * The statements of a batch, in order. The writes between two of another kind (cancel, remove, reopen,
   * prune) form a {@linkcode Segment}, applied as at most five multi-row statements.
   */
  #plan(batch: readonly Write[], careful: boolean): Step[] {
    const steps: Step[] = [];
    let segment = new Segment();
    // A batch of several writes that fails is applied again with care, then one write at a time (see
    // #applyBatch).
    const alone = careful || batch.length === 1;
    const close = () => {
      steps.push(...this.#segmentSteps(segment, alone));
      segment = new Segment();
    };
    for (const write of batch) {
      switch (write.kind) {
        case "create":
        case "published":
        case "started":
        case "retrying":
        case "complete":
          if (!segment.add(write)) {
            close();
            segment.add(write);
          }
          break;
        default:
          close();
          steps.push(this.#aloneStep(write));
      }
    }
    close();
    return steps;
  }

  #segmentSteps(segment: Segment, alone: boolean): Step[] {
    const steps: Step[] = [];
    if (segment.creates.length > 0) {
      // Creates without an idempotency key have ids of their own (`newTaskId`): a plain INSERT, which costs
      // PostgreSQL less than the speculative insertion of ON CONFLICT. Should an id be taken after all (an
      // orphan record: the task's result, consumed by another server, was written first), the INSERT fails,
      // the batch is rolled back and goes again with care: those creates then complete an orphan record
      // (#completingCreatesStep) and answer `created: false` for any other.
      const plain = segment.creates.filter((w) => w.record.idempotencyKey === null);
      const keyed = plain.length === 0
        ? segment.creates
        : segment.creates.filter((w) => w.record.idempotencyKey !== null);
      if (plain.length > 0) {
        steps.push(alone ? this.#completingCreatesStep(plain) : this.#plainCreatesStep(plain));
      }
      if (keyed.length > 0) steps.push(this.#createsStep(keyed));
    }
    if (segment.published.length > 0) {
      const writes = segment.published;
      steps.push({
        query: this.#statement(
          "published",
          `UPDATE ${this.#table} SET published_at = now()
           WHERE task_id = ANY($1::text[]) AND published_at IS NULL`,
          [writes.map((w) => w.taskId)],
        ),
        followUp: false,
        finish: () => writes.map((w) => () => w.settle.resolve()),
      });
    }
    if (segment.started.size > 0) steps.push(this.#startedStep(segment.started));
    if (segment.retrying.size > 0) steps.push(this.#retryingStep(segment.retrying));
    if (segment.completes.size > 0) steps.push(this.#completesStep(segment.completes));
    return steps;
  }

  /** Each cancel, remove, reopen or prune is a statement of its own, in its place in the batch. */
  #aloneStep(write: WriteOf<"cancel" | "remove" | "reopen" | "prune">): Step {
    switch (write.kind) {
      case "cancel":
        return {
          query: this.#statement(
            "cancel",
            `WITH cancelled AS (
               UPDATE ${this.#table} SET status = 'cancelled', finished_at = $2::timestamptz
               WHERE task_id = $1 AND status = 'queued' RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM cancelled) AS cancelled,
                    EXISTS (SELECT 1 FROM ${this.#table} WHERE task_id = $1) AS found`,
            [write.taskId, write.now],
          ),
          followUp: false,
          finish: (result) => {
            const row = result.rows[0] as { cancelled: boolean; found: boolean } | undefined;
            const outcome: CancelOutcome = row?.cancelled
              ? "cancelled"
              : row?.found
              ? "too_late"
              : "not_found";
            return [() => write.settle.resolve(outcome)];
          },
        };
      case "remove":
        return {
          query: this.#statement("remove", `DELETE FROM ${this.#table} WHERE task_id = $1`, [
            write.taskId,
          ]),
          followUp: false,
          finish: () => [() => write.settle.resolve()],
        };
      case "reopen":
        return {
          query: this.#statement(
            "reopen",
            `UPDATE ${this.#table} SET status = 'queued', attempts = 0, worker = NULL,
               started_at = NULL, finished_at = NULL, duration_ms = NULL, output = NULL,
               output_ref = NULL, error_code = NULL, error_message = NULL
             WHERE task_id = $1 AND status IN ${FINAL}`,
            [write.taskId],
          ),
          followUp: false,
          finish: () => [() => write.settle.resolve()],
        };
      case "prune":
        return {
          query: this.#statement("prune", pruneSql(this.#table), [write.before, write.limit]),
          followUp: true,
          finish: async (result, client) => [await this.#pruned(client, write, result.rows)],
        };
    }
  }

  /**
   * The named statement `key` with `values`: PostgreSQL parses and plans it once per connection, then only
   * binds and runs it.
   */
  #statement(key: string, text: string, values: unknown[]): pg.QueryConfig {
    // One pool per store, so one text per name on each connection.
    return { name: `colmena_${key}`, text, values };
  }

  /** One `INSERT … SELECT FROM json_to_recordset(…)` of tasks that all have ids never used. */
  #plainCreatesStep(writes: WriteOf<"create">[]): Step {
    return {
      query: this.#statement(
        "create_plain",
        insertRecordset(this.#table),
        [recordsJson(writes.map((write) => write.record))],
      ),
      followUp: false,
      finish: () =>
        writes.map((write) => () =>
          write.settle.resolve({ taskId: write.record.taskId, created: true })
        ),
    };
  }

  /**
   * Creates without an idempotency key that complete an orphan record of their task: a row a result wrote
   * before the create (`complete` of an unknown task, from another server's consumer) gets the task's own
   * fields (type, priority, client, origin, payload, limits, submit time, owner) and keeps its result.
   * Both count as `created: true`; a row of another task with the same id (never seen: ids are random)
   * is left alone and answers `created: false`.
   */
  #completingCreatesStep(writes: WriteOf<"create">[]): Step {
    const fill = [
      "task_type",
      "priority",
      "client_name",
      "client_kind",
      "origin",
      "payload",
      "payload_ref",
      "file_ref",
      "max_attempts",
      "timeout_ms",
      "submitted_at",
      "owner",
    ].map((column) => `${column} = EXCLUDED.${column}`).join(", ");
    return {
      query: this.#statement(
        "create_completing",
        `${insertRecordset(this.#table)}
         ON CONFLICT (task_id) DO UPDATE SET ${fill}
         WHERE t.owner = '' AND t.client_name = '${UNKNOWN_CLIENT.name}'
           AND t.payload IS NULL AND t.payload_ref IS NULL
         RETURNING task_id AS "taskId"`,
        [recordsJson(writes.map((write) => write.record))],
      ),
      followUp: false,
      finish: (result) => {
        const created = new Set(result.rows.map((row: { taskId: string }) => row.taskId));
        return writes.map((write) => () =>
          write.settle.resolve({
            taskId: write.record.taskId,
            created: created.has(write.record.taskId),
          })
        );
      },
    };
  }

  /**
   * One `INSERT … SELECT FROM json_to_recordset(…) ON CONFLICT DO NOTHING` for the segment's creates, then, only when some create with an
   * idempotency key inserted nothing, one read of the tasks those keys already name.
   */
  #createsStep(writes: WriteOf<"create">[]): Step {
    const records = writes.map((write) => write.record);
    const keyedRecords = records.some((record) => record.idempotencyKey !== null);
    return {
      query: this.#statement(
        "create",
        `${insertRecordset(this.#table)}
         ON CONFLICT DO NOTHING
         RETURNING task_id AS "taskId"`,
        [recordsJson(records)],
      ),
      followUp: keyedRecords,
      finish: async (inserted, client) => {
        const created = new Set(inserted.rows.map((row: { taskId: string }) => row.taskId));
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
      },
    };
  }

  /** One `UPDATE … FROM unnest(…)`; several notices for one task merge as if applied in order. */
  #startedStep(byTask: ReadonlyMap<string, WriteOf<"started">[]>): Step {
    const entries = [...byTask].map(([taskId, writes]) => {
      const last = writes.at(-1)!;
      const attempt = Math.max(...writes.map((write) => write.attempt));
      return { taskId, worker: last.worker, startedAt: last.startedAt, attempt };
    });
    const writes = [...byTask.values()].flat();
    return {
      query: this.#statement(
        "started",
        `UPDATE ${this.#table} AS t
         SET status = 'running', worker = v.worker, started_at = v.started_at,
             attempts = GREATEST(t.attempts, v.attempt)
         FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::integer[])
           AS v(task_id, worker, started_at, attempt)
         WHERE t.task_id = v.task_id AND t.status NOT IN ${FINAL}`,
        [
          entries.map((e) => e.taskId),
          entries.map((e) => e.worker),
          entries.map((e) => e.startedAt),
          entries.map((e) => e.attempt),
        ],
      ),
      followUp: false,
      finish: () => writes.map((write) => () => write.settle.resolve()),
    };
  }

  /** One `UPDATE … FROM unnest(…)`; for one task repeated, the last error stays. */
  #retryingStep(byTask: ReadonlyMap<string, WriteOf<"retrying">[]>): Step {
    const entries = [...byTask.values()].map((writes) => writes.at(-1)!);
    const writes = [...byTask.values()].flat();
    return {
      query: this.#statement(
        "retrying",
        `UPDATE ${this.#table} AS t
         SET status = 'queued', error_code = v.code, error_message = v.message
         FROM unnest($1::text[], $2::text[], $3::text[]) AS v(task_id, code, message)
         WHERE t.task_id = v.task_id AND t.status NOT IN ${FINAL}`,
        [
          entries.map((write) => write.taskId),
          entries.map((write) => write.code),
          entries.map((write) => write.message),
        ],
      ),
      followUp: false,
      finish: () => writes.map((write) => () => write.settle.resolve()),
    };
  }

  /**
   * One upsert for the segment's results: a result for an unknown task inserts its record, one for a task
   * not yet final updates it, one for a final task changes nothing. A task repeated in the segment is final
   * after its first result, so the repeats are `false`; the notices it absorbed resolve with it.
   */
  #completesStep(byTask: ReadonlyMap<string, Completion>): Step {
    const entries = [...byTask.values()];
    return {
      query: this.#statement(
        "complete",
        `${insertRecordset(this.#table)}
         ON CONFLICT (task_id) DO UPDATE SET
           status = excluded.status, worker = excluded.worker, started_at = excluded.started_at,
           finished_at = excluded.finished_at, duration_ms = excluded.duration_ms,
           attempts = GREATEST(t.attempts, excluded.attempts), output = excluded.output,
           output_ref = excluded.output_ref,
           error_code = excluded.error_code, error_message = excluded.error_message
         WHERE t.status NOT IN ${FINAL}
         RETURNING task_id AS "taskId"`,
        [recordsJson(entries.map((entry) => entry.record))],
      ),
      followUp: false,
      finish: (updated) => {
        const recorded = new Set(updated.rows.map((row: { taskId: string }) => row.taskId));
        const outcomes: Outcomes = [];
        for (const { writes, absorbed } of entries) {
          const [first, ...repeats] = writes;
          const value = first !== undefined && recorded.has(first.record.taskId);
          if (first !== undefined) outcomes.push(() => first.settle.resolve(value));
          for (const repeat of repeats) outcomes.push(() => repeat.settle.resolve(false));
          for (const notice of absorbed) outcomes.push(() => notice.settle.resolve());
        }
        return outcomes;
      },
    };
  }

  async #pruned(
    client: PoolClient,
    write: WriteOf<"prune">,
    rows: { payloadRef: string | null; fileRef: string | null; outputRef: string | null }[],
  ): Promise<() => void> {
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
  // Its queries fail with a connection error; unheard, the error would also end the process.
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken ??= err;
  };
  client.on("error", onError);
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
    client.off("error", onError);
    client.release(broken ?? false);
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
    // A batch's statements are sent together and answered together (see `#transaction`).
    pipeline: true,
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
