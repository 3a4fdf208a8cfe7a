/**
 * `TaskClient`: the typed library that speaks colmena's protocol to a server.
 *
 * It is a thin class over its parts: the connection ({@linkcode Transport}), the requests awaiting a reply
 * ({@linkcode PendingRequests}), the pushed results ({@linkcode TaskResults}) and file transfers
 * ({@linkcode Transfers}).
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import {
  type ClientKind,
  MAX_BATCH_TASKS,
  PROTOCOL_VERSION,
  type Reply,
  type Request,
  type SubmitOptions,
  type TaskListItem,
  type TaskStatus,
  type TaskView,
} from "../shared/protocol.ts";
import { TaskCatalog } from "../shared/catalog.ts";
import type { AnyTaskDefinition, InputOf, OutputOf, TaskName } from "../shared/task_definition.ts";
import type { BuiltinTasks } from "../shared/tasks/builtin.ts";
import { PendingRequests, unexpectedReply } from "./requests.ts";
import { type TaskResult, TaskResults } from "./results.ts";
import { Transfers } from "./transfers.ts";
import type { ClientTlsOptions } from "./tls.ts";
import { Transport } from "./transport.ts";

export type { ClientTlsOptions, TaskResult };

/** The task types a client of catalogue `C` knows: the built-in ones, then `C`'s. */
export type KnownTasks<C extends readonly AnyTaskDefinition[]> = readonly [...BuiltinTasks, ...C];

/** Options of {@linkcode TaskClient}. */
export interface TaskClientOptions<C extends readonly AnyTaskDefinition[] = []>
  extends ClientTlsOptions {
  /**
   * The user's own task types (a task module's default export): they type `submit`/`run`, and their
   * outputs are checked against their schemas on arrival, as the built-in types' are.
   * @defaultValue none: the built-in types only
   */
  tasks?: C;
  /** Server host. @defaultValue `"localhost"` */
  host?: string;
  /** Server port. @defaultValue `8888` */
  port?: number;
  /** This client's kind, carried on every task. @defaultValue `"cli"` */
  kind?: ClientKind;
  /** This client's name. @defaultValue `"cliente"` */
  name?: string;
  /**
   * Access token (`clm_…`, made by `cliente token crear`), sent in every `hello` (reconnections too); a
   * server started with `--tokens` needs it, and answers `UNAUTHORIZED` without it.
   * @defaultValue none
   */
  token?: string;
  /** How long a request may wait for its reply, reconnections included. @defaultValue `60000` */
  requestTimeoutMs?: number;
  /**
   * After losing the server, how long to keep trying to reconnect (then resend what had no reply and watch
   * the results still awaited); 0 disables reconnection. @defaultValue `30000`
   */
  reconnectForMs?: number;
}

/** What the server said to `hello`. */
export interface Welcome {
  readonly serverId: string;
  readonly protocol: number;
  readonly taskTypes: readonly string[];
  /**
   * Who the server takes this connection for: the `hello` name, or under mutual TLS the subject of the
   * client certificate. Absent from older servers.
   */
  readonly principal?: { readonly name: string; readonly role: "cliente" | "admin" };
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

type WorkersFrame = Extract<Reply, { type: "workers" }>;
type DlqFrame = Extract<Reply, { type: "dlq" }>;
type TaskSpec = Extract<Request, { type: "submit" }>["task"];

/** A worker as the server last heard from it. */
export type WorkerInfo = WorkersFrame["workers"][number];

/** One task for {@linkcode TaskClient.submitMany}: a type, its payload, and its options. */
export type BatchTask<T extends readonly AnyTaskDefinition[]> = {
  [N in TaskName<T>]: { type: N; payload: InputOf<T, N>; options?: SubmitOptions };
}[TaskName<T>];

/**
 * How one task of {@linkcode TaskClient.submitMany} went: accepted (`taskId`, and `duplicate` when its
 * idempotency key was used before), or refused with its own `error` while the others went ahead.
 */
export type SubmitManyItem =
  | { ok: true; taskId: string; duplicate?: true; payloadDiffers?: boolean }
  | { ok: false; error: ColmenaError };

/** Longest `submit_many` line sent to a server that does not tell its limit. */
const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

/** A task in the dead-letter queue. */
export type DeadLetterInfo = NonNullable<DlqFrame["entries"]>[number];

/**
 * A connection to a colmena server: submits tasks, waits for their results, queries tasks by id.
 *
 * Many requests can be in flight at once on one client; replies are matched by request id and results by
 * task id. Results are also announced to `onResult` listeners. When the connection drops, the client
 * reconnects (for `reconnectForMs`), resends the requests that had no reply — each submit carries an
 * idempotency key, so a resent one never makes a second task — and asks for the results it still awaits.
 *
 * Typed by the catalogue it is given: `new TaskClient({ tasks: misTareas })` types `run("resumen", …)`'s
 * payload and output from the module's zod schemas (and the built-in types' from theirs).
 *
 * With `tls: true` (or a `ca`) it connects with TLS, checking the server's certificate against `ca` (PEM
 * text or file; the system's CAs without it); `cert`/`key` present a client certificate to a server with
 * mutual TLS. A TLS failure rejects with `TLS_FAILED`, whose message says what to fix.
 *
 * @example
 * ```ts
 * await using client = new TaskClient({ host: "localhost", port: 8888, kind: "web" });
 * const { words } = await client.run("text", { text: "hola mundo" }); // typed by the `text` schemas
 * const taskId = await client.submit("numbers", { numbers: [1, 2, 3] }, { priority: 9 });
 * const result = await client.result(taskId);
 * if (result.status === "succeeded") console.log(result.output.avg);
 * ```
 */
export class TaskClient<C extends readonly AnyTaskDefinition[] = []> implements AsyncDisposable {
  readonly #options: Required<
    Omit<TaskClientOptions<C>, "tasks" | "token" | keyof ClientTlsOptions>
  >;
  readonly #token: string | undefined;
  /** The server's longest request line, from its `welcome`. */
  #maxLineBytes = DEFAULT_MAX_LINE_BYTES;
  readonly #catalog: TaskCatalog;
  readonly #transport: Transport;
  readonly #requests: PendingRequests;
  readonly #results: TaskResults;
  readonly #transfers: Transfers;
  #connecting: Promise<Welcome> | undefined;
  #welcome: Welcome | undefined;

  constructor(options: TaskClientOptions<C> = {}) {
    // Definitions the built-in catalogue already has (a CLI passes its whole catalogue) count once.
    const builtin = TaskCatalog.builtin();
    this.#catalog = TaskCatalog.withBuiltins(
      (options.tasks ?? []).filter((d) => !TaskCatalog.isBuiltin(d) && builtin.get(d.name) !== d),
    );
    this.#options = {
      host: options.host ?? "localhost",
      port: options.port ?? 8888,
      kind: options.kind ?? "cli",
      name: options.name ?? "cliente",
      requestTimeoutMs: options.requestTimeoutMs ?? 60_000,
      reconnectForMs: options.reconnectForMs ?? 30_000,
    };
    this.#token = options.token;
    this.#transport = new Transport({
      host: this.#options.host,
      port: this.#options.port,
      tls: { tls: options.tls, ca: options.ca, cert: options.cert, key: options.key },
      reconnectForMs: this.#options.reconnectForMs,
      onFrame: (frame) => this.#onFrame(frame),
      shouldReconnect: () => this.#welcome !== undefined,
      onReconnect: () => this.#onReconnect(),
      onClose: (reason) => this.#onClose(reason),
    });
    this.#requests = new PendingRequests({
      timeoutMs: this.#options.requestTimeoutMs,
      send: (line) => this.#transport.write(line),
    });
    this.#results = new TaskResults({
      watch: (taskIds) => this.watch(taskIds),
      fetchOutput: (ref) => this.#transfers.downloadOutput(ref),
      catalog: this.#catalog,
    });
    this.#transfers = new Transfers({ connect: () => this.connect(), requests: this.#requests });
  }

  /** Connects and says `hello`; called by the other methods when needed. */
  connect(): Promise<Welcome> {
    if (this.#transport.isClosed) return Promise.reject(new ColmenaError("CONNECTION_CLOSED"));
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
    return this.#transport.reconnects;
  }

  /**
   * Submits a task; resolves with its id once the server has it recorded and stored in the broker. Without
   * an `idempotencyKey` in `options`, one is made up, so that a resend after a reconnect is the same task.
   */
  async submit<N extends TaskName<KnownTasks<C>>>(
    type: N,
    payload: InputOf<KnownTasks<C>, N>,
    options: SubmitOptions = {},
  ): Promise<string> {
    return await this.submitUnchecked(type, payload, options);
  }

  /**
   * {@linkcode TaskClient.submit} for a type and payload known only at run time (a command line, a
   * bridge): the server still validates the payload against the type's schema.
   */
  async submitUnchecked(
    type: string,
    payload: unknown,
    options: SubmitOptions = {},
  ): Promise<string> {
    await this.connect();
    return await this.#submit({ type, payload }, options);
  }

  /**
   * Submits many tasks in few frames (`submit_many`, up to 1 000 tasks and the server's line limit each), and
   * resolves, in the order given, with how each went: its id once it is recorded and stored in the broker,
   * or its own error (a bad task does not stop the others). Each task keeps its own id, record, retries and
   * result ({@linkcode TaskClient.result}); each gets a made-up idempotency key unless its options have one.
   */
  async submitMany(tasks: readonly BatchTask<KnownTasks<C>>[]): Promise<SubmitManyItem[]> {
    return await this.submitManyUnchecked(tasks);
  }

  /** {@linkcode TaskClient.submitMany} for types and payloads known only at run time. */
  async submitManyUnchecked(
    tasks: readonly { type: string; payload: unknown; options?: SubmitOptions }[],
  ): Promise<SubmitManyItem[]> {
    await this.connect();
    const budget = this.#maxLineBytes - 200; // the frame's envelope
    const frames: { task: TaskSpec; options: SubmitOptions }[][] = [];
    let frame: { task: TaskSpec; options: SubmitOptions }[] = [];
    let bytes = 0;
    // The made-up keys of one call share a random stem: unique, and close together in the store's index of
    // keys (one random key a task scatters its index entries over as many pages).
    const stem = crypto.randomUUID();
    let seq = 0;
    for (const { type, payload, options = {} } of tasks) {
      const item = {
        task: { type, payload },
        options: options.idempotencyKey === undefined
          ? { ...options, idempotencyKey: `${stem}.${(seq++).toString(36)}` }
          : options,
      };
      const size = JSON.stringify(item).length + 1;
      if (frame.length > 0 && (frame.length >= MAX_BATCH_TASKS || bytes + size > budget)) {
        frames.push(frame);
        frame = [];
        bytes = 0;
      }
      frame.push(item);
      bytes += size;
    }
    if (frame.length > 0) frames.push(frame);
    const replies = await Promise.all(frames.map(async (batch) => {
      const reply = await this.#requests.request({
        type: "submit_many",
        id: this.#requests.nextId(),
        tasks: batch,
      });
      if (reply.type !== "accepted_many" || reply.items.length !== batch.length) {
        throw unexpectedReply(reply);
      }
      return reply.items.map((item): SubmitManyItem =>
        "error" in item ? { ok: false, error: ColmenaError.fromWire(item.error) } : {
          ok: true,
          taskId: item.taskId,
          ...(item.duplicate === true ? { duplicate: true } : {}),
          ...(item.payloadDiffers === undefined ? {} : { payloadDiffers: item.payloadDiffers }),
        }
      );
    }));
    return replies.flat();
  }

  /**
   * Waits for the result of a task. One submitted on this client comes as it is pushed; any other (or one
   * whose result an earlier call already took) is asked of the server with `watch`, and a task the server
   * does not know rejects with `NOT_FOUND`. An output too large to be pushed comes as a reference; it is
   * downloaded here, so `output` is always there.
   */
  async result<N extends TaskName<KnownTasks<C>> = TaskName<KnownTasks<C>>>(
    taskId: string,
  ): Promise<TaskResult<N, OutputOf<KnownTasks<C>, N>>> {
    return await this.#results.result(taskId) as TaskResult<N, OutputOf<KnownTasks<C>, N>>;
  }

  /**
   * Uploads a file in pieces and resolves with its reference, for {@linkcode TaskClient.submitFile}. The
   * file streams: memory stays bounded whatever its size.
   */
  upload(
    data: Uint8Array | ReadableStream<Uint8Array>,
  ): Promise<{ ref: string; bytes: number }> {
    return this.#transfers.upload(data);
  }

  /**
   * Uploads a file and submits a task whose payload field `field` is the file's UTF-8 text (e.g.
   * `submitFile("text", "text", bytes)`); the rest of the payload comes from `payload`.
   */
  async submitFile<N extends TaskName<KnownTasks<C>>>(
    type: N,
    field: string,
    data: Uint8Array | ReadableStream<Uint8Array>,
    payload: Partial<InputOf<KnownTasks<C>, N>> = {},
    options: SubmitOptions = {},
  ): Promise<string> {
    return await this.submitFileUnchecked(type, field, data, payload, options);
  }

  /** {@linkcode TaskClient.submitFile} for a type known only at run time. */
  async submitFileUnchecked(
    type: string,
    field: string,
    data: Uint8Array | ReadableStream<Uint8Array>,
    payload: unknown = {},
    options: SubmitOptions = {},
  ): Promise<string> {
    const { ref } = await this.#transfers.upload(data);
    return await this.#submit({ type, payload, file: { ref, field } }, options);
  }

  /** Downloads an object by reference (a large output's `outputRef`). */
  download(ref: string): Promise<Uint8Array> {
    return this.#transfers.download(ref);
  }

  /** Submits a task and waits for its output; a failed task throws its {@linkcode ColmenaError}. */
  async run<N extends TaskName<KnownTasks<C>>>(
    type: N,
    payload: InputOf<KnownTasks<C>, N>,
    options?: SubmitOptions,
  ): Promise<OutputOf<KnownTasks<C>, N>> {
    const taskId = await this.submitUnchecked(type, payload, options);
    const result = await this.#results.result(taskId) as TaskResult<N, OutputOf<KnownTasks<C>, N>>;
    if (result.status !== "succeeded") throw result.error;
    return result.output;
  }

  /** The record of any task, by id; `NOT_FOUND` when the server knows none. */
  async status(taskId: string): Promise<TaskView> {
    await this.connect();
    const reply = await this.#requests.request({
      type: "status",
      id: this.#requests.nextId(),
      taskId,
    });
    if (reply.type !== "task") throw unexpectedReply(reply);
    const { type: _type, id: _id, ...view } = reply;
    return view;
  }

  /** Cancels a queued task; `cancelled` says whether it was in time (it will then not run). */
  async cancel(taskId: string): Promise<{ cancelled: boolean; status: TaskStatus }> {
    await this.connect();
    const reply = await this.#requests.request({
      type: "cancel",
      id: this.#requests.nextId(),
      taskId,
    });
    if (reply.type !== "cancelled") throw unexpectedReply(reply);
    return { cancelled: reply.cancelled, status: reply.status };
  }

  /** Has the results of tasks (submitted anywhere) pushed here; `result(taskId)` then waits for them. */
  async watch(taskIds: readonly string[]): Promise<{ taskIds: string[]; missing: string[] }> {
    await this.connect();
    const reply = await this.#requests.request({
      type: "watch",
      id: this.#requests.nextId(),
      taskIds: [...taskIds],
    });
    if (reply.type !== "watching") throw unexpectedReply(reply);
    return { taskIds: reply.taskIds, missing: reply.missing };
  }

  /**
   * A page of task records, newest first, without their outputs (`outputOmitted` and `outputBytes` say
   * there is one: {@linkcode TaskClient.status} brings it); pass `nextCursor` back for the next page.
   */
  async list(
    filter: ListFilter = {},
    page: { limit?: number; cursor?: string } = {},
  ): Promise<{ items: TaskListItem[]; nextCursor: string | null }> {
    await this.connect();
    const reply = await this.#requests.request({
      type: "list",
      id: this.#requests.nextId(),
      filter,
      limit: page.limit ?? 50,
      ...(page.cursor === undefined ? {} : { cursor: page.cursor }),
    });
    if (reply.type !== "tasks") throw unexpectedReply(reply);
    return { items: reply.items, nextCursor: reply.nextCursor };
  }

  /** The workers alive now, as the server heard from them. */
  async workers(): Promise<WorkerInfo[]> {
    await this.connect();
    const reply = await this.#requests.request({ type: "workers", id: this.#requests.nextId() });
    if (reply.type !== "workers") throw unexpectedReply(reply);
    return reply.workers;
  }

  /** The first tasks in the dead-letter queue, left in place. */
  async deadLetters(limit = 50): Promise<DeadLetterInfo[]> {
    await this.connect();
    const reply = await this.#requests.request({
      type: "dlq",
      id: this.#requests.nextId(),
      action: "list",
      limit,
    });
    if (reply.type !== "dlq") throw unexpectedReply(reply);
    return reply.entries ?? [];
  }

  /** Moves dead-lettered tasks back to the queue for new attempts: these ids, or the first `limit`. */
  async requeueDeadLetters(taskIds?: readonly string[], limit = 50): Promise<string[]> {
    await this.connect();
    const reply = await this.#requests.request({
      type: "dlq",
      id: this.#requests.nextId(),
      action: "requeue",
      limit,
      ...(taskIds === undefined ? {} : { taskIds: [...taskIds] }),
    });
    if (reply.type !== "dlq") throw unexpectedReply(reply);
    return reply.requeued ?? [];
  }

  /** Round trip to the server, in milliseconds. */
  async ping(): Promise<number> {
    await this.connect();
    const t0 = performance.now();
    const reply = await this.#requests.request({ type: "ping", id: this.#requests.nextId() });
    if (reply.type !== "pong") throw unexpectedReply(reply);
    return performance.now() - t0;
  }

  /**
   * Calls `listener` with the result of each task this client receives, once per task even if the server
   * pushes it again; returns a function that unsubscribes.
   */
  onResult(listener: (result: TaskResult) => void): () => void {
    return this.#results.onResult(listener);
  }

  /** Resolves when the client has closed for good: with the reason, or nothing after `close()`. */
  closed(): Promise<void | ColmenaError> {
    return this.#transport.closed();
  }

  /** Closes the connection; whatever still waits is rejected with `CONNECTION_CLOSED`. */
  async close(): Promise<void> {
    await this.#transport.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #open(): Promise<Welcome> {
    await this.#transport.open();
    this.#requests.startTimeouts();
    return await this.#hello();
  }

  async #hello(): Promise<Welcome> {
    const reply = await this.#requests.request({
      type: "hello",
      id: this.#requests.nextId(),
      client: { name: this.#options.name, kind: this.#options.kind },
      protocol: PROTOCOL_VERSION,
      ...(this.#token === undefined ? {} : { token: this.#token }),
    });
    if (reply.type !== "welcome") throw unexpectedReply(reply);
    this.#maxLineBytes = reply.limits?.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.#welcome = {
      serverId: reply.serverId,
      protocol: reply.protocol,
      taskTypes: reply.taskTypes,
      ...(reply.principal === undefined ? {} : { principal: reply.principal }),
    };
    return this.#welcome;
  }

  /** Sends a `submit`, with a made-up idempotency key unless `options` has one. */
  async #submit(task: TaskSpec, options: SubmitOptions): Promise<string> {
    const reply = await this.#requests.request({
      type: "submit",
      id: this.#requests.nextId(),
      task,
      options: options.idempotencyKey === undefined
        ? { ...options, idempotencyKey: crypto.randomUUID() }
        : options,
    });
    if (reply.type !== "accepted") throw unexpectedReply(reply);
    return reply.taskId;
  }

  #onFrame(frame: Reply): void {
    switch (frame.type) {
      case "result":
        this.#results.receive(frame);
        return;
      case "accepted":
        this.#results.accepted(frame.taskId);
        this.#requests.settle(frame);
        return;
      case "accepted_many":
        for (const item of frame.items) if ("taskId" in item) this.#results.accepted(item.taskId);
        this.#requests.settle(frame);
        return;
      case "chunk":
        this.#transfers.receiveChunk(frame);
        // A long download keeps its request alive until its last chunk.
        if (frame.last) this.#requests.settle(frame);
        else this.#requests.keepAlive(frame.id);
        return;
      case "welcome":
      case "uploading":
      case "uploaded":
      case "task":
      case "pong":
      case "error":
      case "cancelled":
      case "watching":
      case "tasks":
      case "workers":
      case "dlq":
        this.#requests.settle(frame);
        return;
      default: {
        const unreachable: never = frame;
        throw new TypeError(`Cannot dispatch frame: ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Says hello again, resends what had no reply, and watches the results still awaited. */
  #onReconnect(): void {
    const resend = this.#requests.unanswered();
    // A resent download starts over.
    this.#transfers.restartDownloads();
    const hello = this.#hello();
    for (const line of resend) this.#transport.write(line);
    const awaited = this.#results.awaited();
    hello.then(() => this.#results.rewatch(awaited)).catch(() => {
      // The connection failed again: its read loop starts another round.
    });
  }

  #onClose(reason: ColmenaError): void {
    this.#requests.close(reason);
    this.#results.close(reason);
    this.#connecting?.catch(() => {});
  }
}
