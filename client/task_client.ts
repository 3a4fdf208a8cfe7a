/**
 * `TaskClient`: the typed library that speaks colmena's protocol to a server.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { ColmenaError } from "../shared/errors.ts";
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
  /** How long a request may wait for its reply. @defaultValue `30000` */
  requestTimeoutMs?: number;
}

/** The end of a task of type `T`: its typed output, or the error it failed with. */
export type TaskResult<T extends TaskType = TaskType> =
  & {
    readonly taskId: string;
    readonly taskType: T;
    readonly worker: string;
    readonly durationMs: number;
  }
  & (
    | { readonly status: "succeeded"; readonly output: TaskOutput<T> }
    | { readonly status: "failed"; readonly error: ColmenaError }
  );

/** What the server said to `hello`. */
export interface Welcome {
  readonly serverId: string;
  readonly protocol: number;
  readonly taskTypes: readonly string[];
}

type ReplyFrame = Reply;

interface PendingRequest {
  readonly resolve: (frame: ReplyFrame) => void;
  readonly reject: (err: ColmenaError) => void;
  readonly deadline: number;
}

/** Result frames kept for tasks nobody has asked about yet, at most. */
const MAX_UNCLAIMED_RESULTS = 100_000;
const MAX_REPLY_LINE_BYTES = 256 * 1024 * 1024;

/**
 * A connection to a colmena server: submits tasks, waits for their results, queries tasks by id.
 *
 * Many requests can be in flight at once on one client; replies are matched by request id and results by
 * task id. Results are also announced to `onResult` listeners.
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
  readonly #listeners = new Set<(result: TaskResult) => void>();
  #out: string[] = [];
  #writing = false;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #reading: Promise<void> | undefined;
  #closed = false;
  #closing = false;
  readonly #closedReason = Promise.withResolvers<void | ColmenaError>();

  constructor(options: TaskClientOptions = {}) {
    this.#options = {
      host: options.host ?? "localhost",
      port: options.port ?? 8888,
      kind: options.kind ?? "cli",
      name: options.name ?? "cliente",
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    };
  }

  /** Connects and says `hello`; called by the other methods when needed. */
  connect(): Promise<Welcome> {
    if (this.#closed) return Promise.reject(new ColmenaError("CONNECTION_CLOSED"));
    this.#connecting ??= this.#open();
    return this.#connecting;
  }

  /** What the server said on connecting, once connected. */
  get welcome(): Welcome | undefined {
    return this.#welcome;
  }

  async #open(): Promise<Welcome> {
    try {
      this.#conn = await Deno.connect({ hostname: this.#options.host, port: this.#options.port });
    } catch (cause) {
      this.#connecting = undefined;
      throw new ColmenaError("CONNECTION_CLOSED", {
        message:
          `No se puede conectar con el servidor en ${this.#options.host}:${this.#options.port}`,
        cause,
      });
    }
    if (this.#closed) {
      // close() was called while connecting.
      this.#conn.close();
      throw new ColmenaError("CONNECTION_CLOSED");
    }
    this.#conn.setNoDelay(true);
    this.#reading = this.#readLoop(this.#conn);
    this.#sweeper = setInterval(() => this.#expire(), 250);
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

  /** Submits a task; resolves with its id once the server has it stored in the broker. */
  async submit<T extends TaskType>(
    type: T,
    payload: TaskInput<T>,
    options?: SubmitOptions,
  ): Promise<string> {
    await this.connect();
    const request: Request = options === undefined
      ? { type: "submit", id: this.#id(), task: { type, payload } }
      : { type: "submit", id: this.#id(), task: { type, payload }, options };
    const reply = await this.#request(request);
    if (reply.type !== "accepted") throw unexpected(reply);
    return reply.taskId;
  }

  /** Waits for the result of a task submitted on this client. */
  result<T extends TaskType = TaskType>(taskId: string): Promise<TaskResult<T>> {
    const done = this.#unclaimed.get(taskId);
    if (done !== undefined) {
      this.#unclaimed.delete(taskId);
      return Promise.resolve(done as TaskResult<T>);
    }
    if (this.#closed) return Promise.reject(new ColmenaError("CONNECTION_CLOSED"));
    const { promise, resolve, reject } = Promise.withResolvers<TaskResult<T>>();
    this.#waiters.set(taskId, {
      resolve: resolve as (r: TaskResult) => void,
      reject,
    });
    return promise;
  }

  /** Submits a task and waits for its output; a failed task throws its {@linkcode ColmenaError}. */
  async run<T extends TaskType>(
    type: T,
    payload: TaskInput<T>,
    options?: SubmitOptions,
  ): Promise<TaskOutput<T>> {
    const taskId = await this.submit(type, payload, options);
    const result = await this.result<T>(taskId);
    if (result.status === "failed") throw result.error;
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

  /** Round trip to the server, in milliseconds. */
  async ping(): Promise<number> {
    await this.connect();
    const t0 = performance.now();
    const reply = await this.#request({ type: "ping", id: this.#id() });
    if (reply.type !== "pong") throw unexpected(reply);
    return performance.now() - t0;
  }

  /** Resolves when the connection has closed: with the reason, or nothing after `close()`. */
  closed(): Promise<void | ColmenaError> {
    return this.#closedReason.promise;
  }

  /** Calls `listener` with every result this client receives; returns a function that unsubscribes. */
  onResult(listener: (result: TaskResult) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
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
      resolve,
      reject,
      deadline: Date.now() + this.#options.requestTimeoutMs,
    });
    this.#out.push(line);
    if (!this.#writing) {
      this.#writing = true;
      setImmediate(() => this.#writeLoop());
    }
    return promise;
  }

  async #writeLoop(): Promise<void> {
    const encoder = new TextEncoder();
    try {
      while (this.#out.length > 0 && this.#conn !== undefined && !this.#closed) {
        const bytes = encoder.encode(this.#out.join(""));
        this.#out = [];
        let offset = 0;
        while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
      }
    } catch (cause) {
      this.#shutdown(new ColmenaError("CONNECTION_CLOSED", { cause }));
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
        const parsed = Reply.safeParse(json.value);
        if (parsed.success) this.#onFrame(parsed.data);
      }
    } catch {
      // the connection ended; handled below
    }
    this.#shutdown(this.#lastError ?? new ColmenaError("CONNECTION_CLOSED"));
  }

  #lastError: ColmenaError | undefined;

  #onFrame(frame: ReplyFrame): void {
    if (frame.type === "result") {
      const result = toTaskResult(frame);
      for (const listener of this.#listeners) listener(result);
      const waiter = this.#waiters.get(frame.taskId);
      if (waiter !== undefined) {
        this.#waiters.delete(frame.taskId);
        waiter.resolve(result);
      } else {
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
  };
  if (frame.status === "succeeded") {
    return { ...base, status: "succeeded", output: frame.output as TaskOutput<TaskType> };
  }
  const error = frame.error === undefined
    ? new ColmenaError("TASK_FAILED")
    : ColmenaError.fromWire(frame.error);
  return { ...base, status: "failed", error };
}

function unexpected(frame: ReplyFrame): ColmenaError {
  return new ColmenaError("INTERNAL", {
    message: `Respuesta inesperada del servidor: "${frame.type}"`,
  });
}
