/**
 * Result routing: which connection awaits which task's result, and getting each result there.
 *
 * Every server consumes `result_queue` and records what it consumes in the task store. A result is pushed to
 * the connection waiting for it on this server; one that belongs to a task another server accepted is
 * forwarded to that server's reply queue, so each result reaches the connection that submitted it. A result
 * is pushed only after its task's `accepted`, and once per connection (duplicates are absorbed by the store);
 * it is pushed while the store records it, and acknowledged to the broker once recorded.
 * Every connection awaiting a task gets its result: the one that submitted it and each one that watches it
 * (only the owner's connections, or an admin's, may watch a task: another principal's is `missing`).
 * Tasks watched after a reconnect (or repeated with an idempotency key) may have their result consumed by
 * another server, so they are also polled in the store.
 *
 * A connection whose client reads more slowly than its results arrive is not dropped for it: while its
 * unsent output is above a high-water mark, its results are owed (only their task ids are held) and sent from
 * the store, oldest first, as the client takes what is queued. Only a client that stops reading altogether
 * (a write blocked longer than `writeTimeoutMs`), or that is owed more than `maxOwedResults`, is dropped
 * with `SLOW_CONSUMER`.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import type { ServerBroker, TaskStore } from "../shared/ports.ts";
import {
  FINAL_STATUSES,
  type Request,
  type ResultPush,
  type TaskView,
} from "../shared/protocol.ts";
import { QUEUE_FORMAT, type ResultBatch, type ResultMessage } from "../shared/queue_messages.ts";
import type { ClientConnection } from "./connection.ts";
import { mayAccess } from "./principal.ts";
import { countTask, observeLatency, type ServerStats } from "./stats.ts";
import { resolveTaskIdPrefix } from "./task_ids.ts";
import { DOWNLOAD_CHUNK_BYTES } from "./transfers.ts";

/** Records a `watch` reads at once. */
const WATCH_BATCH = 16;
/** Owed results read from the store at once. */
const OWED_BATCH = 8;
/** How long to wait before reading owed results again after the store failed. */
const OWED_RETRY_MS = 1_000;
/**
 * The most results one connection may be owed by default: task ids held while its client reads more slowly
 * than its results arrive (about 100 bytes each).
 */
export const MAX_OWED_RESULTS = 100_000;

/**
 * Where a task's result goes once it arrives: held until the task's `accepted` has gone out. One target may
 * stand for many tasks answered together (a slice of a `submit_many`, see {@linkcode ResultRouter.expectMany}):
 * it then holds their early results by task id.
 */
export interface PushTarget {
  readonly conn: ClientConnection;
  /** When the submit began (`performance.now()`), for the latency histogram; unset for a `watch`. */
  readonly since?: number;
  accepted: boolean;
  result?: ResultPush;
  /** The results held for want of `accepted`, by task id, when the target stands for many tasks. */
  readonly held?: Map<string, ResultPush>;
  /** Told when a result (recorded, or being recorded) of the task is held for want of `accepted`. */
  onHeld?: (taskId: string) => void;
}

/** What the router needs. */
export interface ResultRouterDeps {
  readonly serverId: string;
  readonly store: TaskStore;
  /** The broker, once connected. */
  readonly broker: () => ServerBroker | undefined;
  readonly stats: ServerStats;
  /**
   * The connection's output cap: a `watch` of finished tasks waits for the reader past half of it, and
   * results are owed past the same mark.
   */
  readonly maxOutputBytes: number;
  /**
   * The most results a connection may be owed before it is dropped with `SLOW_CONSUMER`.
   * @defaultValue {@linkcode MAX_OWED_RESULTS}
   */
  readonly maxOwedResults?: number;
  /** Told of every task whose result this server sees, or that is cancelled here (quotas in flight). */
  readonly onFinished?: (taskId: string) => void;
}

function _isFinal(view: TaskView): boolean {
  return FINAL_STATUSES.includes(view.status);
}

function _pushFromResult(result: ResultMessage): ResultPush {
  const push: ResultPush = {
    type: "result",
    taskId: result.taskId,
    taskType: result.taskType,
    status: result.status,
    worker: result.worker,
    durationMs: result.durationMs,
    attempts: result.attempt,
  };
  if (result.output !== undefined) push.output = result.output;
  if (result.outputRef !== undefined) push.outputRef = result.outputRef;
  if (result.outputBytes !== undefined) push.outputBytes = result.outputBytes;
  if (result.error !== undefined) push.error = result.error;
  return push;
}

function _pushFromView(view: TaskView): ResultPush {
  const push: ResultPush = {
    type: "result",
    taskId: view.taskId,
    taskType: view.taskType,
    status: view.status === "succeeded"
      ? "succeeded"
      : view.status === "cancelled"
      ? "cancelled"
      : "failed",
    worker: view.worker ?? "",
    durationMs: view.durationMs ?? 0,
  };
  if (view.attempts !== undefined && view.attempts > 0) push.attempts = view.attempts;
  if (view.output !== undefined) push.output = view.output;
  if (view.outputRef !== undefined) push.outputRef = view.outputRef;
  // A task cancelled while it waited for a retry still holds the failed attempt's error: it is CANCELLED.
  if (view.status === "cancelled") push.error = new ColmenaError("CANCELLED").toWire();
  else if (view.error !== undefined) push.error = view.error;
  return push;
}

/** Owns the push targets (by task id) and the watched tasks of one server. */
export class ResultRouter {
  readonly #deps: ResultRouterDeps;
  /** The connections awaiting each task's result, by task id: most tasks have one, kept without a set. */
  readonly #pushes = new Map<string, PushTarget | Set<PushTarget>>();
  /** Tasks whose result may be consumed by another server: polled in the store. */
  readonly #watched = new Set<string>();
  #polling = false;
  /** Tasks with a cancel under way here, and how many. */
  readonly #cancelling = new Map<string, number>();
  /** Results owed to each connection whose output was high, as task ids, oldest first. */
  readonly #owed = new WeakMap<ClientConnection, string[]>();
  /** Connections whose owed results are being read from the store right now. */
  readonly #paying = new WeakSet<ClientConnection>();
  /** Unsent output past which results are owed instead of queued (and a `watch` waits for the reader). */
  readonly #highWater: number;
  readonly #maxOwed: number;

  constructor(deps: ResultRouterDeps) {
    this.#deps = deps;
    this.#highWater = Math.min(4 * DOWNLOAD_CHUNK_BYTES, deps.maxOutputBytes / 2);
    this.#maxOwed = deps.maxOwedResults ?? MAX_OWED_RESULTS;
  }

  /** How many results `conn` is owed (held back while its output was high). */
  owedTo(conn: ClientConnection): number {
    return this.#owed.get(conn)?.length ?? 0;
  }

  /** Makes `conn` the connection awaiting a task it is submitting; a result that comes before `accepted` is held. */
  expect(taskId: string, conn: ClientConnection): PushTarget {
    const target: PushTarget = { conn, since: performance.now(), accepted: false };
    this.#add(taskId, target);
    return target;
  }

  /**
   * {@linkcode expect} for tasks answered together (a slice of a `submit_many`): one target for all of them,
   * which holds each one's early result until {@linkcode acceptedAll}.
   */
  expectMany(taskIds: readonly string[], conn: ClientConnection): PushTarget {
    const target: PushTarget = { conn, since: performance.now(), accepted: false, held: new Map() };
    for (const taskId of taskIds) this.#add(taskId, target);
    return target;
  }

  /** The submit behind `target` failed: nothing will be pushed for it. */
  abandon(taskId: string, target: PushTarget): void {
    target.held?.delete(taskId);
    this.#remove(taskId, target);
  }

  #add(taskId: string, target: PushTarget): void {
    const targets = this.#pushes.get(taskId);
    if (targets === undefined) this.#pushes.set(taskId, target);
    else if (targets instanceof Set) targets.add(target);
    else this.#pushes.set(taskId, new Set([targets, target]));
    target.conn.awaiting.add(taskId);
  }

  #remove(taskId: string, target: PushTarget): void {
    const targets = this.#pushes.get(taskId);
    if (
      targets === target || (targets instanceof Set && targets.delete(target) && targets.size === 0)
    ) {
      this.#pushes.delete(taskId);
      this.#watched.delete(taskId);
    }
    target.conn.awaiting.delete(taskId);
  }

  /** Makes `conn` await a task already accepted, unless it awaits it already. */
  #await(taskId: string, conn: ClientConnection): void {
    if (conn.awaiting.has(taskId)) return;
    this.#add(taskId, { conn, accepted: true });
  }

  /** The task's `accepted` has gone out: a result held meanwhile is pushed now. */
  accepted(taskId: string, target: PushTarget): void {
    target.accepted = true;
    if (target.result !== undefined) this.#deliver(taskId, target, target.result);
  }

  /** The `accepted` of every task of a target of {@linkcode expectMany} has gone out: see {@linkcode accepted}. */
  acceptedAll(target: PushTarget): void {
    target.accepted = true;
    const held = target.held;
    if (held === undefined || held.size === 0) return;
    for (const [taskId, push] of [...held]) this.#deliver(taskId, target, push);
    held.clear();
  }

  /**
   * After `accepted` of a task recorded before (a repeated idempotency key): pushes its result now when
   * `view` is final, and otherwise follows it until it ends, wherever its result is consumed.
   */
  follow(taskId: string, conn: ClientConnection, view: TaskView): void {
    if (_isFinal(view)) {
      conn.send(_pushFromView(view));
      return;
    }
    this.#await(taskId, conn);
    this.#watched.add(taskId);
  }

  /** A task was cancelled: the connections awaiting it get its `cancelled` result. */
  cancelled(taskId: string, view: TaskView): void {
    countTask(this.#deps.stats, "cancelled", view.taskType);
    this.#deps.onFinished?.(taskId);
    const push = _pushFromView(view);
    for (const target of this.#targets(taskId)) this.#deliver(taskId, target, push);
  }

  /** The connections awaiting a task, as a copy (delivering changes the set). */
  #targets(taskId: string): PushTarget[] {
    const targets = this.#pushes.get(taskId);
    return targets === undefined ? [] : targets instanceof Set ? [...targets] : [targets];
  }

  /** A connection ended: forgets where its results were to go. */
  connectionClosed(conn: ClientConnection): void {
    for (const taskId of [...conn.awaiting]) {
      for (const target of this.#targets(taskId)) {
        if (target.conn === conn) this.#remove(taskId, target);
      }
    }
    conn.awaiting.clear();
  }

  /** A connection's `watch`es run one after another, so that it holds one batch of records at a time. */
  watch(conn: ClientConnection, request: Extract<Request, { type: "watch" }>): Promise<void> {
    const run = conn.lastWatch.then(() => this.#watchNow(conn, request));
    conn.lastWatch = run.catch(() => {});
    return run;
  }

  async #watchNow(
    conn: ClientConnection,
    request: Extract<Request, { type: "watch" }>,
  ): Promise<void> {
    const store = this.#deps.store;
    const found: string[] = [];
    const seen = new Set<string>();
    const missing: string[] = [];
    const finished: string[] = [];
    const pending: string[] = [];
    // A few records at a time, keeping only their ids: a watch of many tasks with large outputs (or of one
    // id many times) must not hold every output in memory at once.
    const ids = [...new Set(request.taskIds)];
    for (let i = 0; i < ids.length; i += WATCH_BATCH) {
      if (conn.closed) return;
      const chunk = ids.slice(i, i + WATCH_BATCH);
      const views = await Promise.all(chunk.map((taskId) => store.get(taskId)));
      // Ids not found may be unique prefixes (AMBIGUOUS_ID, before anything is watched, if not unique).
      // A principal's prefixes only count its own tasks (an admin's, every task).
      const visible = conn.principal.role === "admin"
        ? undefined
        : async (taskId: string) =>
          mayAccess(conn.principal, (await store.get(taskId))?.owner ?? "");
      const full = await Promise.all(
        chunk.map((taskId, k) =>
          views[k] === undefined
            ? resolveTaskIdPrefix(store, taskId, visible)
            : Promise.resolve(taskId)
        ),
      );
      await Promise.all(full.map(async (taskId, k) => {
        if (views[k] === undefined && taskId !== undefined) views[k] = await store.get(taskId);
      }));
      chunk.forEach((asked, k) => {
        const view = views[k];
        // Another principal's task is missing, exactly like one that does not exist.
        if (view === undefined || !mayAccess(conn.principal, view.owner ?? "")) {
          return missing.push(asked);
        }
        const taskId = view.taskId;
        // A prefix and the id it stands for (or two prefixes of one id) watch it once.
        if (seen.has(taskId)) return;
        seen.add(taskId);
        found.push(taskId);
        return _isFinal(view) ? finished.push(taskId) : pending.push(taskId);
      });
    }
    for (const taskId of pending) {
      this.#await(taskId, conn);
      this.#watched.add(taskId); // one that ended meanwhile is found in the store by the next poll
    }
    conn.send({ type: "watching", id: request.id, taskIds: found, missing });
    for (const taskId of finished) {
      // A reader takes what is queued before more is loaded; one that never reads is dropped meanwhile.
      if (conn.queuedChars > this.#highWater) await conn.flushed();
      if (conn.closed) return;
      const view = await store.get(taskId);
      if (view !== undefined) conn.send(_pushFromView(view));
    }
  }

  /** Sends a result to its connection once, after `accepted`. */
  #deliver(taskId: string, target: PushTarget, push: ResultPush): void {
    if (!target.accepted) {
      if (target.held !== undefined) target.held.set(taskId, push);
      else target.result = push;
      target.onHeld?.(taskId);
      return;
    }
    this.#remove(taskId, target);
    this.#push(taskId, target.conn, push);
  }

  /**
   * Sends a result to `conn`, or owes it while `conn`'s unsent output is above the high-water mark (or
   * earlier results are still owed, so they keep their order): the record is in the store, or being
   * written there, and is read back when the client has taken what is queued. The task stays in
   * `conn.awaiting` until its result is sent.
   */
  #push(taskId: string, conn: ClientConnection, push: ResultPush): void {
    const owed = this.#owed.get(conn);
    if (owed === undefined && conn.queuedChars <= this.#highWater) return conn.send(push);
    if (conn.closed) return;
    if (owed === undefined) {
      this.#owed.set(conn, [taskId]);
      conn.onWritten = () => void this.#payOwed(conn);
    } else owed.push(taskId);
    conn.awaiting.add(taskId);
    if ((owed?.length ?? 1) > this.#maxOwed) {
      conn.drop(
        new ColmenaError("SLOW_CONSUMER", {
          message: `El cliente tiene más de ${this.#maxOwed} resultados sin recibir`,
        }),
      );
    }
  }

  /**
   * Sends `conn` the results it is owed, oldest first, read from the store a few at a time, while its unsent
   * output stays under the high-water mark; called after each of its socket writes. A result whose write to
   * the store failed is read once the broker's copy is written (`PendingResultsStore`); one still not final
   * then is awaited again like a watched task.
   */
  async #payOwed(conn: ClientConnection): Promise<void> {
    const owed = this.#owed.get(conn);
    if (owed === undefined || this.#paying.has(conn)) return;
    this.#paying.add(conn);
    try {
      while (owed.length > 0 && !conn.closed && conn.queuedChars <= this.#highWater) {
        const taskIds = owed.slice(0, OWED_BATCH);
        const views = await Promise.all(taskIds.map((taskId) => this.#deps.store.get(taskId)));
        if (conn.closed) return;
        let sent = 0;
        for (; sent < taskIds.length && conn.queuedChars <= this.#highWater; sent++) {
          const taskId = taskIds[sent]!;
          const view = views[sent];
          conn.awaiting.delete(taskId);
          if (view === undefined) continue; // deleted meanwhile (retention): nothing left to send
          if (_isFinal(view)) conn.send(_pushFromView(view));
          else {
            this.#await(taskId, conn);
            this.#watched.add(taskId);
          }
        }
        owed.splice(0, sent);
      }
      if (owed.length === 0) {
        this.#owed.delete(conn);
        conn.onWritten = undefined;
      }
    } catch (err) {
      log.error("No se pudieron leer del almacén resultados pendientes de enviar", err);
      setTimeout(() => void this.#payOwed(conn), OWED_RETRY_MS);
    } finally {
      this.#paying.delete(conn);
    }
  }

  /**
   * A cancel of the task is under way here: until the returned function is called, its results are pushed
   * only after the store has recorded them (after the cancel, in the store's order), not before.
   */
  cancelling(taskId: string): () => void {
    this.#cancelling.set(taskId, (this.#cancelling.get(taskId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#cancelling.get(taskId) ?? 1) - 1;
      if (left > 0) this.#cancelling.set(taskId, left);
      else this.#cancelling.delete(taskId);
    };
  }

  /**
   * Records a batch from `result_queue`, pushes what this server's connections await, forwards the rest.
   *
   * Results are pushed before their record commits, while the store writes them: the returned promise, and
   * with it the broker's ack of the batch, waits for the COMMIT, so a result pushed by a server that dies
   * before it is delivered again to the next server, which records it. Reads on this server wait for the
   * pending write (`PendingResultsStore`). A result of a task with a cancel under way here waits for its
   * record, and is pushed only if it made the task final (otherwise the cancel answers for it).
   */
  async onResults(batch: ResultBatch): Promise<void> {
    const { store, stats, serverId } = this.#deps;
    const foreign = new Map<string, ResultBatch>();
    const foreignOf = (origin: string): ResultBatch => {
      let b = foreign.get(origin);
      if (b === undefined) {
        b = { v: QUEUE_FORMAT, forwarded: true, started: [], retrying: [], results: [] };
        foreign.set(origin, b);
      }
      return b;
    };
    const forwardable = (origin: string) => !batch.forwarded && origin !== serverId;
    // One turn's writes go in one transaction, applied in call order (the stores promise both): the
    // notices before the results, so a task's start never lands after its result, at one COMMIT per batch.
    const notices = Promise.all([
      ...batch.started.map((n) => store.markStarted(n)),
      ...batch.retrying.map((n) => store.markRetrying(n.taskId, n.error)),
    ]);
    const completed = Promise.all(batch.results.map((r) => store.complete(r)));
    // Seconds from each submit to its push, for the results this server's connections awaited.
    const latencies = batch.results.map((result) =>
      this.#cancelling.has(result.taskId) ? null : this.#route(result)
    );
    const [, firsts] = await Promise.all([notices, completed]);
    for (const n of batch.started) if (forwardable(n.origin)) foreignOf(n.origin).started.push(n);
    for (const n of batch.retrying) if (forwardable(n.origin)) foreignOf(n.origin).retrying.push(n);
    batch.results.forEach((result, i) => {
      // Held back for a cancel: pushed only when it made the task final. A duplicate is the cancel's to
      // answer (`cancelled`), or was pushed when the task ended.
      const early = latencies[i];
      const latency = early !== null ? early : firsts[i] ? this.#route(result) : undefined;
      if (early === null && !firsts[i]) this.#deps.onFinished?.(result.taskId);
      if (firsts[i]) {
        stats.results++;
        countTask(stats, result.status, result.taskType);
      } else if (!batch.forwarded) stats.duplicates++;
      // The latency is this server's to observe when it holds the submit, first or forwarded here.
      if (latency !== undefined && (firsts[i] || batch.forwarded)) {
        observeLatency(stats, result.taskType, latency);
      }
      // Forwarded even when a connection here awaited it too: one of the same principal on the origin
      // server (a repeated idempotency key, a watch) may await it there.
      if (forwardable(result.origin)) foreignOf(result.origin).results.push(result);
    });
    const broker = this.#deps.broker();
    if (foreign.size > 0 && broker !== undefined) {
      const forwards = Promise.all(
        [...foreign].map(([origin, b]) => {
          stats.forwarded += b.results.length;
          return broker.forwardResults(origin, b);
        }),
      );
      if (!broker.blocked) return void await forwards;
      // Under a broker alarm a forward waits until it clears: the batch is acknowledged without it, so that
      // results keep being recorded and pushed here. The results are recorded; only the push to the other
      // server's connections waits (or is lost if this server dies meanwhile; they find them with `watch`).
      forwards.catch((err) => log.warn(`Reenvío de resultados durante la alarma fallido: ${err}`));
    }
  }

  /**
   * Pushes a result to the connections awaiting its task. A duplicate is routed like a first result: a
   * connection still waiting, or a forward that failed after the record was written, would otherwise never
   * get it; each push target takes one result. Returns the seconds since the submit this server holds, if any.
   */
  #route(result: ResultMessage): number | undefined {
    this.#deps.onFinished?.(result.taskId);
    const targets = this.#targets(result.taskId);
    if (targets.length === 0) return undefined;
    const since = targets.find((t) => t.since !== undefined)?.since;
    const push = _pushFromResult(result);
    for (const target of targets) this.#deliver(result.taskId, target, push);
    return since === undefined ? undefined : (performance.now() - since) / 1000;
  }

  /** Looks in the store for the results of watched tasks (they may be consumed by another server). */
  async pollWatched(): Promise<void> {
    if (this.#watched.size === 0 || this.#polling) return;
    this.#polling = true;
    try {
      for (const taskId of [...this.#watched]) {
        const targets = this.#targets(taskId).filter((t) => !t.conn.closed);
        if (targets.length === 0) {
          this.#watched.delete(taskId);
          continue;
        }
        const view = await this.#deps.store.get(taskId);
        if (view !== undefined && _isFinal(view)) {
          const push = _pushFromView(view);
          for (const target of targets) this.#deliver(taskId, target, push);
        }
      }
    } catch (err) {
      log.error("No se pudo consultar el almacén por tareas vigiladas", err);
    } finally {
      this.#polling = false;
    }
  }
}
