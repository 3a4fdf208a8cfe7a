/**
 * `TaskClient`: the typed library that speaks colmena's protocol to a server.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import { ColmenaError, isErrorCode } from "../shared/errors.ts";
import {
  DEFAULT_MAX_JSON_DEPTH,
  DEFAULT_MAX_LINE_BYTES,
  exceedsJsonDepth,
  LineFramer,
} from "../shared/framing.ts";
import {
  type ClientKind,
  encodeFrame,
  parseJsonLine,
  PROTOCOL_VERSION,
  Reply,
  type Request,
  type SubmitOptions,
  type TaskStatus,
  type TaskView,
} from "../shared/protocol.ts";
import type { TaskInput, TaskOutput, TaskType } from "../shared/tasks.ts";

/** Options of {@linkcode TaskClient}. */
export interface TaskClientOptions {
  /** Server host. @defaultValue `"localhost"` */
  host?: string;
  /** Server port. @defaultValue `8888` */
  port?: number;
  /** This client's kind, carried on every task. @defaultValue `"cli"` */
  kind?: ClientKind;
  /** This client's name. @defaultValue `"cliente"` */
  name?: string;
  /** How long a request may wait for its reply, reconnections included. @defaultValue `60000` */
  requestTimeoutMs?: number;
  /**
   * After losing the server, how long to keep trying to reconnect (then resend what had no reply and watch
   * the results still awaited); 0 disables reconnection. @defaultValue `30000`
   */
  reconnectForMs?: number;
}

/** The end of a task of type `T`: its typed output, or the error it failed with. */
export type TaskResult<T extends TaskType = TaskType> =
  & {
    readonly taskId: string;
    readonly taskType: T;
    readonly worker: string;
    readonly durationMs: number;
    /** The attempt that produced it. */
    readonly attempts?: number;
    /** Where a large output was stored; `result()` has already downloaded it into `output`. */
    readonly outputRef?: string;
  }
  & (
    | { readonly status: "succeeded"; readonly output: TaskOutput<T> }
    | { readonly status: "failed" | "cancelled"; readonly error: ColmenaError }
  );

/** What the server said to `hello`. */
export interface Welcome {
  readonly serverId: string;
  readonly protocol: number;
  readonly taskTypes: readonly string[];
}

/** Filters of {@linkcode TaskClient.list}. */
export interface ListFilter {
  statuses?: TaskStatus[];
  taskType?: string;
  clientKind?: ClientKind;
  clientName?: string;
  /** ISO 8601. */
  since?: string;
  /** ISO 8601. */
  until?: string;
}

type ReplyFrame = Reply;
type WorkersFrame = Extract<ReplyFrame, { type: "workers" }>;
type DlqFrame = Extract<ReplyFrame, { type: "dlq" }>;

/** A worker as the server last heard from it. */
export type WorkerInfo = WorkersFrame["workers"][number];

/** A task in the dead-letter queue. */
export type DeadLetterInfo = NonNullable<DlqFrame["entries"]>[number];

interface PendingRequest {
  readonly line: string;
  readonly resolve: (frame: ReplyFrame) => void;
  readonly reject: (err: ColmenaError) => void;
  readonly deadline: number;
}

/** Bytes of one `upload` piece. */
const UPLOAD_PIECE_BYTES = 512 * 1024;

/** Result frames kept for tasks nobody has asked about yet, at most. */
const MAX_UNCLAIMED_RESULTS = 100_000;
const MAX_REPLY_LINE_BYTES = 256 * 1024 * 1024;

/**
 * A connection to a colmena server: submits tasks, waits for their results, queries tasks by id.
 *
 * Many requests can be in flight at once on one client; replies are matched by request id and results by
 * task id. Results are also announced to `onResult` listeners. When the connection drops, the client
 * reconnects (for `reconnectForMs`), resends the requests that had no reply — each submit carries an
 * idempotency key, so a resent one never makes a second task — and asks for the results it still awaits.
 *
 * @example
 * ```ts
 * await using client = new TaskClient({ host: "localhost", port: 8888, kind: "web" });
 * const { words } = await client.run("text", { text: "hola mundo" }); // typed: TaskOutput<"text">
 * const taskId = await client.submit("numbers", { numbers: [1, 2, 3] }, { priority: 9 });
 * const result = await client.result(taskId);
 * if (result.status === "succeeded") console.log(result.output.avg);
 * ```
 */
export class TaskClient implements AsyncDisposable {
  readonly #options: Required<TaskClientOptions>;
  #conn: Deno.TcpConn | undefined;
  #connecting: Promise<Welcome> | undefined;
  #welcome: Welcome | undefined;
  #nextId = 1;
  readonly #requests = new Map<string, PendingRequest>();
  readonly #waiters = new Map<
    string,
    { resolve: (r: TaskResult) => void; reject: (e: ColmenaError) => void }
  >();
  readonly #unclaimed = new Map<string, TaskResult>();
  readonly #downloads = new Map<string, Buffer[]>();
  /** Tasks accepted on this client whose result has not come yet: watched again after a reconnect. */
  readonly #outstanding = new Set<string>();
  /** Tasks whose result the listeners have seen (the latest ones): a repeat is not announced again. */
  readonly #announced = new Set<string>();
  readonly #listeners = new Set<(result: TaskResult) => void>();
  #out: string[] = [];
  #writing = false;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #reading: Promise<void> | undefined;
  #closed = false;
  #closing = false;
  #reconnecting = false;
  #reconnects = 0;
  #lastError: ColmenaError | undefined;
  readonly #closedReason = Promise.withResolvers<void | ColmenaError>();

  constructor(options: TaskClientOptions = {}) {
    this.#options = {
      host: options.host ?? "localhost",
      port: options.port ?? 8888,
      kind: options.kind ?? "cli",
      name: options.name ?? "cliente",
      requestTimeoutMs: options.requestTimeoutMs ?? 60_000,
      reconnectForMs: options.reconnectForMs ?? 30_000,
    };
  }

  /** Connects and says `hello`; called by the other methods when needed. */
  connect(): Promise<Welcome> {
    if (this.#closed) return Promise.reject(new ColmenaError("CONNECTION_CLOSED"));
    this.#connecting ??= this.#open().catch((err) => {
      this.#connecting = undefined;
      throw err;
    });
    return this.#connecting;
  }

  /** What the server said on connecting, once connected. */
  get welcome(): Welcome | undefined {
    return this.#welcome;
  }

  /** How many times the client has reconnected after losing the server. */
  get reconnects(): number {
    return this.#reconnects;
  }

  async #dial(): Promise<Deno.TcpConn> {
    try {
      return await Deno.connect({ hostname: this.#options.host, port: this.#options.port });
    } catch (cause) {
      throw new ColmenaError("CONNECTION_CLOSED", {
        message:
          `No se puede conectar con el servidor en ${this.#options.host}:${this.#options.port}`,
        cause,
      });
    }
  }

  async #open(): Promise<Welcome> {
    const conn = await this.#dial();
    if (this.#closed) {
      // close() was called while connecting.
      conn.close();
      throw new ColmenaError("CONNECTION_CLOSED");
    }
    this.#attach(conn);
    this.#sweeper = setInterval(() => this.#expire(), 250);
    return await this.#hello();
  }

  #attach(conn: Deno.TcpConn): void {
    conn.setNoDelay(true);
    this.#conn = conn;
    this.#reading = this.#readLoop(conn);
  }

  async #hello(): Promise<Welcome> {
    const reply = await this.#request({
      type: "hello",
      id: this.#id(),
      client: { name: this.#options.name, kind: this.#options.kind },
      protocol: PROTOCOL_VERSION,
    });
    if (reply.type !== "welcome") throw unexpected(reply);
    this.#welcome = {
      serverId: reply.serverId,
      protocol: reply.protocol,
      taskTypes: reply.taskTypes,
    };
    return this.#welcome;
  }

  /**
   * Submits a task; resolves with its id once the server has it recorded and stored in the broker. Without
   * an `idempotencyKey` in `options`, one is made up, so that a resend after a reconnect is the same task.
   */
  async submit<T extends TaskType>(
    type: T,
    payload: TaskInput<T>,
    options: SubmitOptions = {},
  ): Promise<string> {
    await this.connect();
    const withKey = options.idempotencyKey === undefined
      ? { ...options, idempotencyKey: crypto.randomUUID() }
      : options;
    const reply = await this.#request({
      type: "submit",
      id: this.#id(),
      task: { type, payload },
      options: withKey,
    });
    if (reply.type !== "accepted") throw unexpected(reply);
    return reply.taskId;
  }

  /**
   * Waits for the result of a task. One submitted on this client comes as it is pushed; any other (or one
   * whose result an earlier call already took) is asked of the server with `watch`, and a task the server
   * does not know rejects with `NOT_FOUND`. An output too large to be pushed comes as a reference; it is
   * downloaded here, so `output` is always there.
   */
  async result<T extends TaskType = TaskType>(taskId: string): Promise<TaskResult<T>> {
    const result = await this.#result<T>(taskId);
    if (result.status !== "succeeded" || result.outputRef === undefined) return result;
    const bytes = await this.download(result.outputRef);
    return { ...result, output: JSON.parse(new TextDecoder().decode(bytes)) as TaskOutput<T> };
  }

  #result<T extends TaskType = TaskType>(taskId: string): Promise<TaskResult<T>> {
    const done = this.#unclaimed.get(taskId);
    if (done !== undefined) {
      this.#unclaimed.delete(taskId);
      return Promise.resolve(done as TaskResult<T>);
    }
    if (this.#closed) return Promise.reject(new ColmenaError("CONNECTION_CLOSED"));
    const { promise, resolve, reject } = Promise.withResolvers<TaskResult<T>>();
    // A second caller waiting for the same task shares the result with the first.
    const earlier = this.#waiters.get(taskId);
    this.#waiters.set(taskId, {
      resolve: (r: TaskResult) => {
        earlier?.resolve(r);
        resolve(r as TaskResult<T>);
      },
      reject: (e: ColmenaError) => {
        earlier?.reject(e);
        reject(e);
      },
    });
    if (earlier === undefined && !this.#outstanding.has(taskId)) {
      // Nothing is on its way here for this task (an earlier call took its result, or it was submitted
      // elsewhere): ask the server, which pushes the result at once if the task has ended.
      this.watch([taskId]).then(({ missing }) => {
        if (!missing.includes(taskId)) return;
        this.#waiters.get(taskId)?.reject(new ColmenaError("NOT_FOUND"));
        this.#waiters.delete(taskId);
      }, () => {
        // The connection closed: its shutdown or reconnect deals with the waiter.
      });
    }
    return promise;
  }

  /**
   * Uploads a file in pieces and resolves with its reference, for {@linkcode TaskClient.submitFile}. The
   * file streams: memory stays bounded whatever its size.
   */
  async upload(
    data: Uint8Array | ReadableStream<Uint8Array>,
  ): Promise<{ ref: string; bytes: number }> {
    await this.connect();
    const stream = data instanceof Uint8Array ? ReadableStream.from([data]) : data;
    let uploadId: string | undefined;
    let held = Buffer.alloc(0);
    const send = async (piece: Buffer, last: boolean) => {
      const reply = await this.#request({
        type: "upload",
        id: this.#id(),
        data: piece.toString("base64"),
        last,
        ...(uploadId === undefined ? {} : { uploadId }),
      });
      if (reply.type === "uploading") uploadId = reply.uploadId;
      else if (reply.type === "uploaded") return { ref: reply.ref, bytes: reply.bytes };
      else throw unexpected(reply);
      return undefined;
    };
    for await (const part of stream) {
      held = Buffer.concat([held, part]);
      while (held.length > UPLOAD_PIECE_BYTES) {
        await send(held.subarray(0, UPLOAD_PIECE_BYTES), false);
        held = held.subarray(UPLOAD_PIECE_BYTES);
      }
    }
    const done = await send(held, true);
    if (done === undefined) throw new ColmenaError("INTERNAL");
    return done;
  }

  /**
   * Uploads a file and submits a task whose payload field `field` is the file's UTF-8 text (e.g.
   * `submitFile("text", "text", bytes)`); the rest of the payload comes from `payload`.
   */
  async submitFile<T extends TaskType>(
    type: T,
    field: string,
    data: Uint8Array | ReadableStream<Uint8Array>,
    payload: Partial<TaskInput<T>> = {},
    options: SubmitOptions = {},
  ): Promise<string> {
    const { ref } = await this.upload(data);
    const reply = await this.#request({
      type: "submit",
      id: this.#id(),
      task: { type, payload, file: { ref, field } },
      options: options.idempotencyKey === undefined
        ? { ...options, idempotencyKey: crypto.randomUUID() }
        : options,
    });
    if (reply.type !== "accepted") throw unexpected(reply);
    return reply.taskId;
  }

  /** Downloads an object by reference (a large output's `outputRef`). */
  async download(ref: string): Promise<Uint8Array> {
    await this.connect();
    const id = this.#id();
    this.#downloads.set(id, []);
    try {
      const reply = await this.#request({ type: "download", id, ref });
      if (reply.type !== "chunk") throw unexpected(reply);
      return new Uint8Array(Buffer.concat(this.#downloads.get(id) ?? []));
    } finally {
      this.#downloads.delete(id);
    }
  }

  /** Submits a task and waits for its output; a failed task throws its {@linkcode ColmenaError}. */
  async run<T extends TaskType>(
    type: T,
    payload: TaskInput<T>,
    options?: SubmitOptions,
  ): Promise<TaskOutput<T>> {
    const taskId = await this.submit(type, payload, options);
    const result = await this.result<T>(taskId);
    if (result.status !== "succeeded") throw result.error;
    return result.output;
  }

  /** The record of any task, by id; `NOT_FOUND` when the server knows none. */
  async status(taskId: string): Promise<TaskView> {
    await this.connect();
    const reply = await this.#request({ type: "status", id: this.#id(), taskId });
    if (reply.type !== "task") throw unexpected(reply);
    const { type: _type, id: _id, ...view } = reply;
    return view;
  }

  /** Cancels a queued task; `cancelled` says whether it was in time (it will then not run). */
  async cancel(taskId: string): Promise<{ cancelled: boolean; status: TaskStatus }> {
    await this.connect();
    const reply = await this.#request({ type: "cancel", id: this.#id(), taskId });
    if (reply.type !== "cancelled") throw unexpected(reply);
    return { cancelled: reply.cancelled, status: reply.status };
  }

  /** Has the results of tasks (submitted anywhere) pushed here; `result(taskId)` then waits for them. */
  async watch(taskIds: readonly string[]): Promise<{ taskIds: string[]; missing: string[] }> {
    await this.connect();
    const reply = await this.#request({ type: "watch", id: this.#id(), taskIds: [...taskIds] });
    if (reply.type !== "watching") throw unexpected(reply);
    return { taskIds: reply.taskIds, missing: reply.missing };
  }

  /** A page of task records, newest first; pass `nextCursor` back for the next page. */
  async list(
    filter: ListFilter = {},
    page: { limit?: number; cursor?: string } = {},
  ): Promise<{ items: TaskView[]; nextCursor: string | null }> {
    await this.connect();
    const reply = await this.#request({
      type: "list",
      id: this.#id(),
      filter,
      limit: page.limit ?? 50,
      ...(page.cursor === undefined ? {} : { cursor: page.cursor }),
    });
    if (reply.type !== "tasks") throw unexpected(reply);
    return { items: reply.items, nextCursor: reply.nextCursor };
  }

  /** The workers alive now, as the server heard from them. */
  async workers(): Promise<WorkerInfo[]> {
    await this.connect();
    const reply = await this.#request({ type: "workers", id: this.#id() });
    if (reply.type !== "workers") throw unexpected(reply);
    return reply.workers;
  }

  /** The first tasks in the dead-letter queue, left in place. */
  async deadLetters(limit = 50): Promise<DeadLetterInfo[]> {
    await this.connect();
    const reply = await this.#request({ type: "dlq", id: this.#id(), action: "list", limit });
    if (reply.type !== "dlq") throw unexpected(reply);
    return reply.entries ?? [];
  }

  /** Moves dead-lettered tasks back to the queue for new attempts: these ids, or the first `limit`. */
  async requeueDeadLetters(taskIds?: readonly string[], limit = 50): Promise<string[]> {
    await this.connect();
    const reply = await this.#request({
      type: "dlq",
      id: this.#id(),
      action: "requeue",
      limit,
      ...(taskIds === undefined ? {} : { taskIds: [...taskIds] }),
    });
    if (reply.type !== "dlq") throw unexpected(reply);
    return reply.requeued ?? [];
  }

  /** Round trip to the server, in milliseconds. */
  async ping(): Promise<number> {
    await this.connect();
    const t0 = performance.now();
    const reply = await this.#request({ type: "ping", id: this.#id() });
    if (reply.type !== "pong") throw unexpected(reply);
    return performance.now() - t0;
  }

  /**
   * Calls `listener` with the result of each task this client receives, once per task even if the server
   * pushes it again; returns a function that unsubscribes.
   */
  onResult(listener: (result: TaskResult) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves when the client has closed for good: with the reason, or nothing after `close()`. */
  closed(): Promise<void | ColmenaError> {
    return this.#closedReason.promise;
  }

  /** Closes the connection; whatever still waits is rejected with `CONNECTION_CLOSED`. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#shutdown(new ColmenaError("CONNECTION_CLOSED"));
    await this.#reading;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #id(): string {
    return String(this.#nextId++);
  }

  #request(frame: Request): Promise<ReplyFrame> {
    if (this.#closed) return Promise.reject(new ColmenaError("CONNECTION_CLOSED"));
    const line = encodeFrame(frame);
    // The server could not tell which request a too large or too deep line was: refuse it here.
    if (line.length > DEFAULT_MAX_LINE_BYTES) {
      return Promise.reject(new ColmenaError("FRAME_TOO_LARGE"));
    }
    if (exceedsJsonDepth(line, DEFAULT_MAX_JSON_DEPTH)) {
      return Promise.reject(new ColmenaError("TOO_DEEP"));
    }
    const { promise, resolve, reject } = Promise.withResolvers<ReplyFrame>();
    this.#requests.set(frame.id, {
      line,
      resolve,
      reject,
      deadline: Date.now() + this.#options.requestTimeoutMs,
    });
    if (!this.#reconnecting) this.#write(line);
    return promise;
  }

  #write(line: string): void {
    this.#out.push(line);
    if (!this.#writing) {
      this.#writing = true;
      setImmediate(() => this.#writeLoop());
    }
  }

  async #writeLoop(): Promise<void> {
    const encoder = new TextEncoder();
    const conn = this.#conn;
    try {
      while (this.#out.length > 0 && conn !== undefined && !this.#closed && !this.#reconnecting) {
        const bytes = encoder.encode(this.#out.join(""));
        this.#out = [];
        let offset = 0;
        while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
      }
    } catch {
      // The read loop sees the same failure and reconnects or shuts down.
      try {
        conn?.close();
      } catch {
        // already closed
      }
    } finally {
      this.#writing = false;
    }
  }

  async #readLoop(conn: Deno.TcpConn): Promise<void> {
    try {
      for await (const framed of conn.readable.pipeThrough(new LineFramer(MAX_REPLY_LINE_BYTES))) {
        if (framed.kind !== "line" || framed.bytes.length === 0) continue;
        const json = parseJsonLine(framed.bytes, { maxDepth: 10_000 });
        if (!json.ok) continue;
        const parsed = Reply.safeParse(normalizeErrorCodes(json.value));
        if (parsed.success) this.#onFrame(parsed.data);
      }
    } catch {
      // the connection ended; handled below
    }
    if (this.#closed) return;
    const reason = this.#lastError ?? new ColmenaError("CONNECTION_CLOSED");
    this.#lastError = undefined;
    if (this.#options.reconnectForMs > 0 && this.#welcome !== undefined) {
      this.#reconnect(reason);
    } else {
      this.#shutdown(reason);
    }
  }

  /** Dials again with backoff; then says hello, resends what had no reply, and watches awaited results. */
  async #reconnect(reason: ColmenaError): Promise<void> {
    this.#reconnecting = true;
    this.#out = [];
    const giveUpAt = Date.now() + this.#options.reconnectForMs;
    let delay = 100;
    while (!this.#closed) {
      await new Promise((r) => setTimeout(r, delay));
      if (this.#closed) return;
      let conn: Deno.TcpConn;
      try {
        conn = await this.#dial();
      } catch {
        if (Date.now() + delay > giveUpAt) {
          this.#shutdown(reason);
          return;
        }
        delay = Math.min(delay * 2, 2_000);
        continue;
      }
      if (this.#closed) {
        conn.close();
        return;
      }
      this.#reconnects++;
      const resend = [...this.#requests.values()].map((p) => p.line);
      // A resent download starts over.
      for (const parts of this.#downloads.values()) parts.length = 0;
      this.#reconnecting = false;
      this.#attach(conn);
      const hello = this.#hello();
      for (const line of resend) this.#write(line);
      const awaited = [...new Set([...this.#waiters.keys(), ...this.#outstanding])];
      try {
        await hello;
        if (awaited.length > 0) {
          const { missing } = await this.watch(awaited);
          for (const taskId of missing) {
            this.#outstanding.delete(taskId);
            this.#waiters.get(taskId)?.reject(new ColmenaError("NOT_FOUND"));
            this.#waiters.delete(taskId);
          }
        }
      } catch {
        // The connection failed again: its read loop starts another round.
      }
      return;
    }
  }

  #onFrame(frame: ReplyFrame): void {
    if (frame.type === "accepted") this.#outstanding.add(frame.taskId);
    if (frame.type === "result") {
      this.#outstanding.delete(frame.taskId);
      const result = toTaskResult(frame);
      // A result that came before (a reconnect's watch, a later `result()` asking again) resolves whoever
      // waits now, but is announced to the listeners once.
      const repeated = this.#announced.has(frame.taskId);
      if (!repeated) {
        this.#announced.add(frame.taskId);
        if (this.#announced.size > MAX_UNCLAIMED_RESULTS) {
          const oldest = this.#announced.values().next().value;
          if (oldest !== undefined) this.#announced.delete(oldest);
        }
        for (const listener of this.#listeners) listener(result);
      }
      const waiter = this.#waiters.get(frame.taskId);
      if (waiter !== undefined) {
        this.#waiters.delete(frame.taskId);
        waiter.resolve(result);
      } else if (!repeated) {
        this.#unclaimed.set(frame.taskId, result);
        if (this.#unclaimed.size > MAX_UNCLAIMED_RESULTS) {
          const oldest = this.#unclaimed.keys().next().value;
          if (oldest !== undefined) this.#unclaimed.delete(oldest);
        }
      }
      return;
    }
    if (frame.id === null) {
      // A connection-level error: the close that follows rejects the rest with it.
      if (frame.type === "error") this.#lastError = ColmenaError.fromWire(frame);
      return;
    }
    if (frame.type === "chunk") {
      const parts = this.#downloads.get(frame.id);
      if (parts !== undefined) parts.push(Buffer.from(frame.data, "base64"));
      if (!frame.last) {
        // A long download keeps its request alive.
        const pending = this.#requests.get(frame.id);
        if (pending !== undefined) {
          this.#requests.delete(frame.id);
          this.#requests.set(frame.id, {
            ...pending,
            deadline: Date.now() + this.#options.requestTimeoutMs,
          });
        }
        return;
      }
    }
    const pending = this.#requests.get(frame.id);
    if (pending === undefined) return;
    this.#requests.delete(frame.id);
    if (frame.type === "error") pending.reject(ColmenaError.fromWire(frame));
    else pending.resolve(frame);
  }

  #expire(): void {
    const now = Date.now();
    // Deadlines grow with insertion order, so the expired ones are at the front.
    for (const [id, pending] of this.#requests) {
      if (pending.deadline > now) break;
      this.#requests.delete(id);
      pending.reject(
        new ColmenaError("TIMEOUT", {
          message: `El servidor no respondió en ${this.#options.requestTimeoutMs} ms`,
        }),
      );
    }
  }

  #shutdown(error: ColmenaError): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
    for (const pending of this.#requests.values()) pending.reject(error);
    this.#requests.clear();
    for (const waiter of this.#waiters.values()) waiter.reject(error);
    this.#waiters.clear();
    this.#connecting?.catch(() => {});
    this.#closedReason.resolve(this.#closing ? undefined : error);
  }
}

function toTaskResult(frame: Extract<ReplyFrame, { type: "result" }>): TaskResult {
  const base = {
    taskId: frame.taskId,
    taskType: frame.taskType as TaskType,
    worker: frame.worker,
    durationMs: frame.durationMs,
    ...(frame.attempts === undefined ? {} : { attempts: frame.attempts }),
    ...(frame.outputRef === undefined ? {} : { outputRef: frame.outputRef }),
  };
  if (frame.status === "succeeded") {
    return { ...base, status: "succeeded", output: frame.output as TaskOutput<TaskType> };
  }
  const error = frame.error === undefined
    ? new ColmenaError(frame.status === "cancelled" ? "CANCELLED" : "TASK_FAILED")
    : ColmenaError.fromWire(frame.error);
  return { ...base, status: frame.status, error };
}

/**
 * A newer server may send error codes this client does not know: they become `INTERNAL` (keeping the
 * message), so the frame is still understood instead of dropped.
 */
function normalizeErrorCodes(value: unknown): unknown {
  if (typeof value !== "object" || value === null) return value;
  const frame = value as Record<string, unknown>;
  if (frame.type === "error" && typeof frame.code === "string" && !isErrorCode(frame.code)) {
    return { ...frame, code: "INTERNAL" };
  }
  const error = frame.error as Record<string, unknown> | undefined;
  if (
    frame.type === "result" && typeof error === "object" && error !== null &&
    typeof error.code === "string" && !isErrorCode(error.code)
  ) {
    return { ...frame, error: { ...error, code: "INTERNAL" } };
  }
  return value;
}

function unexpected(frame: ReplyFrame): ColmenaError {
  return new ColmenaError("INTERNAL", {
    message: `Respuesta inesperada del servidor: "${frame.type}"`,
  });
}
