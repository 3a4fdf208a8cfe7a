/**
 * Submit: validates a task against the catalogue, stores a large payload as an object (claim check), records
 * the task and publishes it, publishing again after a lost confirm. A submit that repeats an idempotency key
 * creates and publishes nothing of its own: it gets the first task.
 *
 * @module
 */
import { isUploadOf, payloadKey, UPLOAD_KEY } from "../shared/blob_keys.ts";
import type { ServerConfig } from "../shared/config.ts";
import { blobNotFound } from "../shared/adapters/fs_blob.ts";
import { ColmenaError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import type { BlobStore, NewTask, ServerBroker, TaskStore } from "../shared/ports.ts";
import type { TaskCatalog } from "../shared/catalog.ts";
import type { BatchItem, Request } from "../shared/protocol.ts";
import { QUEUE_FORMAT, type TaskMessage } from "../shared/queue_messages.ts";
import type { ClientConnection } from "./connection.ts";
import type { Principal } from "./principal.ts";
import type { InFlightSlot, PrincipalQuotas } from "./quotas.ts";
import type { PushTarget, ResultRouter } from "./result_routing.ts";
import { newTaskId } from "./task_ids.ts";
import { countAcceptedKind, countTask, type ServerStats } from "./stats.ts";

type SubmitRequest = Extract<Request, { type: "submit" }>;
type SubmitManyRequest = Extract<Request, { type: "submit_many" }>;
/** One task of a `submit_many`. */
type _BatchTask = Pick<SubmitRequest, "task" | "options">;

/** How one submitted task ended: accepted (answer, then route its result), refused, or not taken. */
type _Outcome =
  | {
    kind: "accepted";
    reply: { taskId: string; duplicate?: true; payloadDiffers?: boolean };
    /** Routes the task's result; called once the answer is sent, so the result never comes before it. */
    afterReply: () => void;
  }
  | { kind: "refused"; error: ColmenaError }
  | { kind: "stopping" };

/** A plain task on its way to be published while its record is written. */
interface _PlainSubmit {
  readonly newTask: NewTask;
  readonly broker: ServerBroker;
  readonly slot: InFlightSlot | undefined;
  readonly ask: { maxAttempts: number; timeoutMs: number };
  readonly bulk: boolean;
}

/** A task of a `submit_many` checked and admitted, ready to be recorded with the others of its slice. */
interface _PlainTask {
  readonly newTask: NewTask;
  readonly checked: CheckedTask;
  readonly ask: { priority: number; maxAttempts: number; timeoutMs: number };
  readonly slot: InFlightSlot | undefined;
  /** Its place in the slice. */
  readonly at: number;
}

/** An unexpected failure of one task in a batch becomes its `INTERNAL` error; logged. */
function _asColmenaError(err: unknown): ColmenaError {
  if (err instanceof ColmenaError) return err;
  log.error("Fallo inesperado al aceptar una tarea de un lote", err);
  return new ColmenaError("INTERNAL", { cause: err });
}
type FileSpec = NonNullable<SubmitRequest["task"]["file"]>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A submitted task checked against the catalogue. */
interface CheckedTask {
  readonly type: string;
  /** The validated payload (defaults applied), without the file's field when the task reads a file. */
  readonly payload: unknown;
  /** The task type's timeout, for a submit that names none. */
  readonly defaultTimeoutMs: number;
}

/** Files up to this size are read whole at submit, so the payload's schema checks the file's text too. */
const FILE_TEXT_CHECK_BYTES = 1024 * 1024;

/** An uploaded file as the submit check reads it: its size, and its text when small enough to keep. */
interface FileText {
  readonly bytes: number;
  readonly text: string | undefined;
}

/**
 * Tasks of a `submit_many` started in one event-loop turn: the first slice, then the later ones. A frame
 * of 1,000 handled in one turn records and publishes nothing until every task is checked, then waits for
 * the store and the broker with the event loop idle; in slices the three overlap. Each slice is one store
 * transaction (`createMany`, one fsync with SQLite), so after a small first slice, which sets the writer
 * going early, the rest goes in larger ones (measured, SQLite, one call of 1,000 after another, 4 pairs on
 * a loaded machine: 2,400–4,100 tasks/s in slices of 250, 2,900–4,400 with 250 then 750).
 */
const SUBMIT_MANY_FIRST_SLICE = 250;
/** Tasks of each later slice of a `submit_many` (see {@linkcode SUBMIT_MANY_FIRST_SLICE}). */
const SUBMIT_MANY_SLICE = 750;

/**
 * Longest wait to note the confirms of keyed `submit_many` tasks when no further slice comes to carry them
 * (a repeat of such a key waits for the note, polling every {@linkcode CONFIRM_POLL_MS}).
 */
const MARK_DELAY_MS = 20;

/** Past a submit's publish deadline, how long its confirm may still take to be noted in the store. */
const CONFIRM_MARGIN_MS = 5_000;
/** How often a repeat looks for the first submit's confirm. */
const CONFIRM_POLL_MS = 100;

/**
 * Reads an uploaded file once, as a stream: its size (stopping past `maxBytes`), and whether it is UTF-8
 * text; a binary file is refused here, at submit, with `INVALID_PAYLOAD`, never by a worker.
 */
async function _readFileText(
  blobs: BlobStore,
  file: FileSpec,
  maxBytes: number | undefined,
): Promise<FileText> {
  const strict = new TextDecoder("utf-8", { fatal: true });
  let bytes = 0;
  let text: string | undefined = "";
  const stream = await blobs.stream(file.ref);
  try {
    for await (const chunk of stream) {
      bytes += chunk.length;
      if (maxBytes !== undefined && bytes > maxBytes) return { bytes, text: undefined };
      const piece = strict.decode(chunk, { stream: true });
      text = bytes <= FILE_TEXT_CHECK_BYTES && text !== undefined ? text + piece : undefined;
    }
    const last = strict.decode();
    return { bytes, text: text === undefined ? undefined : text + last };
  } catch (err) {
    if (err instanceof TypeError) {
      throw new ColmenaError("INVALID_PAYLOAD", {
        message: `El fichero no es texto UTF-8 válido: una tarea "${file.field}" necesita texto`,
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * Checks a submitted task against the catalogue: the one place the submit path looks task types up. With a
 * file, the type must take one in that field, the file must be UTF-8 text within the type's payload limit,
 * and the payload is checked with the file's text in its field (for a file over 1 MiB, the schema of that
 * field is not checked: the worker checks it), which is then left out: the worker puts the text there.
 */
async function _checkTask(
  task: SubmitRequest["task"],
  principal: Principal,
  deps: { readonly catalog: TaskCatalog; readonly blobs: BlobStore },
): Promise<{ ok: true; value: CheckedTask } | { ok: false; error: ColmenaError }> {
  if (principal.types !== undefined && !principal.types.includes(task.type)) {
    return {
      ok: false,
      error: new ColmenaError("FORBIDDEN", {
        message: `Su token no permite enviar tareas "${task.type.slice(0, 64)}" (solo: ${
          principal.types.join(", ")
        })`,
      }),
    };
  }
  const file = task.file;
  if (file === undefined) {
    const valid = deps.catalog.validate({ type: task.type, payload: task.payload });
    if (!valid.ok) return valid;
    const { type, payload, definition } = valid.value;
    return { ok: true, value: { type, payload, defaultTimeoutMs: definition.timeoutMs } };
  }
  const rest = typeof task.payload === "object" && task.payload !== null ? task.payload : {};
  // Type and field first, without reading the file.
  const early = deps.catalog.accepts(task.type, file.field);
  if (!early.ok) return early;
  if (!UPLOAD_KEY.test(file.ref)) {
    return {
      ok: false,
      error: new ColmenaError("INVALID_PAYLOAD", {
        message: `"task.file.ref" no es una referencia de fichero subido: "${
          file.ref.slice(0, 64)
        }"`,
      }),
    };
  }
  if (principal.role !== "admin" && !isUploadOf(file.ref, principal.name)) {
    // Another principal's upload is not found, exactly like one that does not exist.
    return { ok: false, error: blobNotFound(file.ref) };
  }
  const definition = early.value;
  let read: FileText;
  try {
    read = await _readFileText(deps.blobs, file, definition.limits.maxPayloadBytes);
  } catch (err) {
    if (err instanceof ColmenaError) return { ok: false, error: err };
    throw err;
  }
  // A file too large to keep in memory here stands in as a short text; its bytes still count.
  const valid = deps.catalog.validate(
    { type: task.type, payload: { ...rest, [file.field]: read.text ?? " " } },
    { field: file.field, bytes: read.text === undefined ? read.bytes : 0 },
  );
  if (!valid.ok) return valid;
  const { [file.field]: _text, ...payload } = valid.value.payload as Record<string, unknown>;
  return {
    ok: true,
    value: { type: task.type, payload, defaultTimeoutMs: definition.timeoutMs },
  };
}

/** JSON text with every object's keys sorted, so that two equal values give the same text. */
function _canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) =>
      v !== null && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(
          Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0),
        )
        : v,
  ) ?? "";
}

/** What the submit path needs. */
export interface SubmitDeps {
  readonly config: Pick<ServerConfig, "claimCheckBytes" | "maxAttempts" | "publishRetryMs">;
  readonly serverId: string;
  readonly store: TaskStore;
  readonly blobs: BlobStore;
  /** The task types this server accepts: built-in plus `--tareas` modules. */
  readonly catalog: TaskCatalog;
  /** The broker, once connected. */
  readonly broker: () => ServerBroker | undefined;
  /** Whether the server is draining: no new tasks then. */
  readonly stopping: () => boolean;
  readonly router: ResultRouter;
  readonly stats: ServerStats;
  /** The quotas of `cliente` principals, checked after the task and before anything is stored. */
  readonly quotas?: PrincipalQuotas;
}

/** Takes `submit` requests. */
export class Submitter {
  readonly #deps: SubmitDeps;
  /** Publishes under way, by task id: a repeat of the same key waits for the first one's outcome. */
  readonly #inFlight = new Map<string, Promise<void>>();
  /**
   * Idempotency keys of this server's creates under way, by owner, with how many: a key here may be
   * recorded any moment, so a task with it is recorded before it is published.
   */
  readonly #keysHeld = new Map<string, Map<string, number>>();
  /** Keyed tasks of `submit_many`s confirmed and not yet noted published (see `#markPublishedSoon`). */
  #toMark: string[] = [];
  #markTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(deps: SubmitDeps) {
    this.#deps = deps;
  }

  /** Answers a `submit` with `accepted` once the task is recorded and the broker confirmed it. */
  async submit(client: ClientConnection, request: SubmitRequest): Promise<void> {
    const outcome = await this.#accept(client, request);
    if (outcome.kind === "stopping") {
      // Not answered: the goodbye closes the connection, and a client that reconnects (through a balancer,
      // to another server) resends this submit with its idempotency key, so it sees no error.
      return client.end(new ColmenaError("SHUTTING_DOWN"));
    }
    if (outcome.kind === "refused") return client.sendError(request.id, outcome.error);
    client.send({ type: "accepted", id: request.id, ...outcome.reply });
    outcome.afterReply();
  }

  /**
   * Answers a `submit_many` with one `accepted_many` once every task in it is settled. Each task is settled
   * as a lone `submit` would be: a task refused (or failed) gets its error in its place and the others are
   * queued. The tasks of a slice that need neither a file nor a claim check are recorded in one store write
   * (`createMany`, so a key repeated within the frame gives the first task) and published in bulk messages
   * (see `BULK_HEADER`); the others go one by one. Their results are routed only after the answer is sent.
   */
  async submitMany(client: ClientConnection, request: SubmitManyRequest): Promise<void> {
    const pending: Promise<_Outcome[]>[] = [];
    for (
      let i = 0, size = SUBMIT_MANY_FIRST_SLICE;
      i < request.tasks.length;
      i += size, size = SUBMIT_MANY_SLICE
    ) {
      // Each slice's records and publishes leave at the end of its turn (the store and the broker batch
      // per turn), so the store's writer and the broker work on one slice while the next one is checked.
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 0));
      pending.push(this.#acceptSlice(client, request.tasks.slice(i, i + size)));
    }
    const outcomes = (await Promise.all(pending)).flat();
    if (
      outcomes.some((o) => o.kind === "stopping") && outcomes.every((o) => o.kind !== "accepted")
    ) {
      return client.end(new ColmenaError("SHUTTING_DOWN"));
    }
    const items: BatchItem[] = outcomes.map((o) => {
      switch (o.kind) {
        case "accepted":
          return o.reply;
        case "refused":
          return { error: o.error.toWire() };
        case "stopping":
          return { error: new ColmenaError("SHUTTING_DOWN").toWire() };
      }
    });
    client.send({ type: "accepted_many", id: request.id, items });
    for (const o of outcomes) if (o.kind === "accepted") o.afterReply();
  }

  /** The outcome of each task of a slice of a `submit_many`, in order; see {@linkcode submitMany}. */
  async #acceptSlice(client: ClientConnection, items: readonly _BatchTask[]): Promise<_Outcome[]> {
    // Settled outcomes in place; a task that is still under way has its promise there.
    const outcomes: (_Outcome | Promise<_Outcome>)[] = [];
    const plain: _PlainTask[] = [];
    const broker = this.#deps.broker();
    // The tasks of a slice arrived together: one submit time and one copy of the client for all of them.
    const stamp = { submittedAt: new Date().toISOString(), client: { ...client.client } };
    for (const item of items) {
      let ready: _PlainTask | _Outcome | undefined;
      try {
        ready = this.#preparePlain(client, item, { broker, stamp, at: outcomes.length });
      } catch (err) {
        ready = { kind: "refused", error: _asColmenaError(err) };
      }
      if (ready === undefined) {
        outcomes.push(
          this.#accept(client, item, true).catch((err): _Outcome => ({
            kind: "refused",
            error: _asColmenaError(err),
          })),
        );
      } else if ("kind" in ready) {
        outcomes.push(ready);
      } else {
        plain.push(ready);
        outcomes.push(_STOPPING); // replaced below
      }
    }
    if (plain.length === 0 || broker === undefined) return await _settleAll(outcomes);
    const { store } = this.#deps;
    const owner = client.principal.name;
    const newTasks = plain.map((p) => p.newTask);
    // Which tasks may be published while their slice is recorded: on a store only this server writes, one
    // without a key, or one whose key no recorded task holds and no write of this server under way takes.
    // Asked before the slice's own create starts, which is what holds its keys from then on.
    const early = this.#publishableEarly(owner, newTasks);
    // The confirms noted since the last slice ride in this slice's transaction.
    this.#flushMarks();
    const recording = store.createMany(newTasks);
    this.#holdKeys(owner, newTasks, recording);
    const publishable = await early;
    const now: number[] = [];
    const onPublished = (taskId: string) => this.#markPublishedSoon(taskId);
    plain.forEach((p, k) => {
      if (publishable[k]) {
        now.push(k);
        return;
      }
      // A keyed task that may repeat a key waits for its record, which may name an earlier task.
      outcomes[p.at] = recording.then((recorded) =>
        this.#publishRecorded(client, {
          newTask: p.newTask,
          recorded: recorded[k]!,
          checked: p.checked,
          ask: p.ask,
          broker,
          slot: p.slot,
          file: undefined,
          bulk: true,
          onPublished,
        })
      ).catch((err): _Outcome => ({ kind: "refused", error: _asColmenaError(err) }))
        .finally(() => p.slot?.release()); // a no-op once the task is tracked
    });
    if (now.length > 0) {
      const settled = await this.#recordManyWhilePublishing(client, {
        plain,
        now,
        recording,
        broker,
      });
      now.forEach((k, j) => {
        outcomes[plain[k]!.at] = settled[j]!;
      });
    }
    return await _settleAll(outcomes);
  }

  /**
   * For each task (in order), whether it may be published while it is recorded: only on a store this server
   * alone writes, which applies its writes in order. A task without a key always; a keyed one when its key
   * is not held by a recorded task (`takenKeys`, the committed writes), nor by a create of this server still
   * under way (`#keysHeld`), nor by an earlier task of `tasks`: then its record is certain to be created.
   * Call it before the tasks' own create is started.
   */
  #publishableEarly(owner: string, tasks: readonly NewTask[]): Promise<boolean[]> {
    const { store } = this.#deps;
    if (store.shared) return Promise.resolve(tasks.map(() => false));
    const held = this.#keysHeld.get(owner);
    const candidates = new Set<string>();
    const clashes = new Set<string>();
    for (const { idempotencyKey: key } of tasks) {
      if (key === undefined) continue;
      if (held?.has(key)) clashes.add(key);
      candidates.add(key);
    }
    const asked = [...candidates].filter((key) => !clashes.has(key));
    if (asked.length > 0 && store.takenKeys === undefined) {
      return Promise.resolve(tasks.map((task) => task.idempotencyKey === undefined));
    }
    const taken = asked.length === 0
      ? Promise.resolve(new Set<string>())
      : store.takenKeys!(owner, asked);
    return taken.then((held) => {
      const first = new Set<string>();
      return tasks.map(({ idempotencyKey: key }) => {
        if (key === undefined) return true;
        if (clashes.has(key) || held.has(key) || first.has(key)) return false;
        first.add(key);
        return true;
      });
    }, () => tasks.map((task) => task.idempotencyKey === undefined));
  }

  /** Counts the keys of `tasks` as taken by this server until `recording` settles (see `#keysHeld`). */
  #holdKeys(owner: string, tasks: readonly NewTask[], recording: Promise<unknown>): void {
    const keys: string[] = [];
    for (const { idempotencyKey: key } of tasks) if (key !== undefined) keys.push(key);
    if (keys.length === 0) return;
    let held = this.#keysHeld.get(owner);
    if (held === undefined) {
      held = new Map();
      this.#keysHeld.set(owner, held);
    }
    for (const key of keys) held.set(key, (held.get(key) ?? 0) + 1);
    const counts = held;
    const release = () => {
      for (const key of keys) {
        const count = counts.get(key)! - 1;
        if (count === 0) counts.delete(key);
        else counts.set(key, count);
      }
      if (counts.size === 0 && this.#keysHeld.get(owner) === counts) this.#keysHeld.delete(owner);
    };
    recording.then(release, release);
  }

  /**
   * {@linkcode #markPublished} for a keyed task of a `submit_many`, noted with the others in one store write:
   * in the transaction of the next slice recorded (an fsync saved) or, when none comes, after
   * {@linkcode MARK_DELAY_MS}.
   */
  #markPublishedSoon(taskId: string): void {
    if (this.#toMark.length === 0) {
      this.#markTimer = setTimeout(() => this.#flushMarks(), MARK_DELAY_MS);
    }
    this.#toMark.push(taskId);
  }

  #flushMarks(): Promise<void> {
    clearTimeout(this.#markTimer);
    this.#markTimer = undefined;
    if (this.#toMark.length === 0) return Promise.resolve();
    const taskIds = this.#toMark;
    this.#toMark = [];
    return this.#deps.store.markPublishedMany(taskIds).catch((err) =>
      log.warn(`No se pudo anotar la publicación de ${taskIds.length} tareas: ${String(err)}`)
    );
  }

  /** Notes now the confirms still waiting to be noted; called once no submit is left, before the store closes. */
  async drain(): Promise<void> {
    await this.#flushMarks();
  }

  /**
   * Checks a task of a `submit_many` that names no file, and admits it (quotas) ready to be recorded:
   * `undefined` when it must go the way of a lone submit instead (a file, a payload past the claim check,
   * a type the principal may not send), or the outcome that settles it now. Throws a quota's refusal.
   */
  #preparePlain(
    client: ClientConnection,
    item: _BatchTask,
    { broker, stamp, at }: {
      broker: ServerBroker | undefined;
      stamp: { submittedAt: string; client: NewTask["client"] };
      at: number;
    },
  ): _PlainTask | _Outcome | undefined {
    const { task } = item;
    const { principal } = client;
    if (task.file !== undefined) return undefined;
    if (principal.types !== undefined && !principal.types.includes(task.type)) return undefined;
    const valid = this.#deps.catalog.validate({ type: task.type, payload: task.payload });
    if (!valid.ok) return { kind: "refused", error: valid.error };
    if (this.#deps.stopping()) return { kind: "stopping" };
    if (broker === undefined || !broker.connected) {
      return { kind: "refused", error: new ColmenaError("BROKER_UNAVAILABLE") };
    }
    if (broker.blocked) return { kind: "refused", error: new ColmenaError("BROKER_BLOCKED") };
    const { config, stats } = this.#deps;
    const { type, payload, definition } = valid.value;
    if (JSON.stringify(payload).length > config.claimCheckBytes) return undefined;
    const options = item.options ?? {};
    const ask = {
      priority: options.priority ?? 0,
      maxAttempts: options.maxAttempts ?? config.maxAttempts,
      timeoutMs: options.timeoutMs ?? definition.timeoutMs,
    };
    const slot = this.#deps.quotas?.admitSubmit(principal, ask);
    countTask(stats, "submitted", type);
    const newTask: NewTask = {
      taskId: newTaskId(),
      taskType: type,
      priority: ask.priority,
      client: stamp.client,
      owner: principal.name,
      submittedAt: stamp.submittedAt,
      origin: this.#deps.serverId,
      payload,
      maxAttempts: ask.maxAttempts,
      timeoutMs: ask.timeoutMs,
      ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
    };
    return {
      newTask,
      checked: { type, payload, defaultTimeoutMs: definition.timeoutMs },
      ask,
      slot,
      at,
    };
  }

  /** Checks, records and publishes one task; throws what a lone `submit` would answer as an error. */
  async #accept(
    client: ClientConnection,
    request: SubmitRequest | _BatchTask,
    bulk = false,
  ): Promise<_Outcome> {
    const checked = await _checkTask(request.task, client.principal, this.#deps);
    if (!checked.ok) return { kind: "refused", error: checked.error };
    const broker = this.#deps.broker();
    if (this.#deps.stopping()) return { kind: "stopping" };
    if (broker === undefined || !broker.connected) {
      return { kind: "refused", error: new ColmenaError("BROKER_UNAVAILABLE") };
    }
    if (broker.blocked) {
      // Nothing recorded or published: a publish now would wait until the alarm clears.
      return { kind: "refused", error: new ColmenaError("BROKER_BLOCKED") };
    }
    const { defaultTimeoutMs } = checked.value;
    const options = request.options ?? {};
    const ask = {
      priority: options.priority ?? 0,
      maxAttempts: options.maxAttempts ?? this.#deps.config.maxAttempts,
      timeoutMs: options.timeoutMs ?? defaultTimeoutMs,
    };
    const slot = this.#deps.quotas?.admitSubmit(client.principal, ask);
    try {
      return await this.#submitAdmitted(client, request, {
        checked: checked.value,
        ask,
        broker,
        slot,
        bulk,
      });
    } finally {
      slot?.release(); // a no-op once the task is tracked
    }
  }

  async #submitAdmitted(
    client: ClientConnection,
    request: SubmitRequest | _BatchTask,
    { checked, ask, broker, slot, bulk }: {
      checked: CheckedTask;
      ask: { priority: number; maxAttempts: number; timeoutMs: number };
      broker: ServerBroker;
      slot: InFlightSlot | undefined;
      bulk: boolean;
    },
  ): Promise<_Outcome> {
    const { config, store, blobs, stats } = this.#deps;
    const { type } = checked;
    countTask(stats, "submitted", type);
    const file = request.task.file;
    const options = request.options ?? {};
    const taskId = newTaskId();
    let payload = checked.payload;
    let payloadRef: string | undefined;
    const payloadJson = JSON.stringify(payload);
    if (payloadJson.length > config.claimCheckBytes) {
      // Claim check: the payload travels as an object, the message only names it. It is written before the
      // record, so that no record ever names a missing object.
      payloadRef = payloadKey(taskId);
      await blobs.put(payloadRef, encoder.encode(payloadJson));
      payload = undefined;
    }
    const newTask: NewTask = {
      taskId,
      taskType: type,
      priority: ask.priority,
      client: { ...client.client },
      owner: client.principal.name,
      submittedAt: new Date().toISOString(),
      origin: this.#deps.serverId,
      ...(payloadRef === undefined ? { payload } : { payloadRef }),
      ...(file === undefined ? {} : { fileRef: file.ref }),
      maxAttempts: ask.maxAttempts,
      timeoutMs: ask.timeoutMs,
      ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
    };
    if (
      (!store.shared || store.createCompletesOrphans === true) &&
      options.idempotencyKey === undefined && payloadRef === undefined && file === undefined
    ) {
      return await this.#recordWhilePublishing(client, { newTask, broker, slot, ask, bulk });
    }
    const recording = store.create(newTask);
    this.#holdKeys(newTask.owner ?? newTask.client.name, [newTask], recording);
    return await this.#publishRecorded(client, {
      newTask,
      recorded: await recording,
      checked,
      ask,
      broker,
      slot,
      file,
      bulk,
      onPublished: (id) => this.#markPublished(id),
    });
  }

  /**
   * The rest of a submit once its record is written (or found, for a repeated key): publishes the task and
   * answers as a lone `submit` would; `onPublished` notes the confirm of a task with an idempotency key.
   */
  async #publishRecorded(
    client: ClientConnection,
    {
      newTask,
      recorded: { taskId: recorded, created },
      checked,
      ask,
      broker,
      slot,
      file,
      bulk,
      onPublished,
    }: {
      newTask: NewTask;
      recorded: { taskId: string; created: boolean };
      checked: CheckedTask;
      ask: { priority: number; maxAttempts: number; timeoutMs: number };
      broker: ServerBroker;
      slot: InFlightSlot | undefined;
      file: FileSpec | undefined;
      bulk: boolean;
      onPublished: (taskId: string) => void;
    },
  ): Promise<_Outcome> {
    const { store, blobs, router, stats } = this.#deps;
    const { taskId, payloadRef, idempotencyKey, taskType: type } = newTask;
    if (!created) {
      // A repeat: no record holds this submit's object.
      if (payloadRef !== undefined) await blobs.delete([payloadRef]).catch(() => {});
      return await this.#repeated(client, {
        broker,
        taskId: recorded,
        repeat: { type, payload: checked.payload, file },
      });
    }
    // Counted in flight from here: its result may come back before the broker's confirm does.
    slot?.track(taskId, ask);
    const target = router.expect(taskId, client);
    const finished = _resultHeld(target);
    const publishing = this.#publishSurely(
      broker,
      _taskMessage(newTask, file),
      { finished: finished.seen, bulk },
    );
    this.#inFlight.set(taskId, publishing.catch(() => {}));
    try {
      await Promise.race([publishing, finished.promise]);
    } catch (err) {
      stats.rejected++;
      countTask(stats, "rejected", type);
      this.#inFlight.delete(taskId);
      router.abandon(taskId, target);
      const unknown = err instanceof ColmenaError && err.code === "PUBLISH_UNCONFIRMED";
      if (unknown && idempotencyKey !== undefined) {
        // The task may be queued: its record stays, so that a resubmit with the key gets this task (published
        // again under the same id) instead of a second one.
        log.warn(`La tarea ${taskId} quedó sin confirmar; se conserva su registro para su clave`);
        throw err;
      }
      this.#deps.quotas?.finished(taskId);
      await store.remove(taskId).catch((e) =>
        log.error("No se pudo borrar una tarea rechazada", e)
      );
      if (payloadRef !== undefined) await blobs.delete([payloadRef]).catch(() => {});
      throw err;
    }
    this.#inFlight.delete(taskId);
    if (idempotencyKey !== undefined) onPublished(taskId);
    stats.accepted++;
    countTask(stats, "accepted", type);
    countAcceptedKind(stats, newTask.client.kind);
    return {
      kind: "accepted",
      reply: { taskId },
      afterReply: () => router.accepted(taskId, target),
    };
  }

  /**
   * The path of a plain task (no idempotency key, no object): records it and publishes it at once, and
   * answers `accepted` when both are done, so the store's commit (an fsync with SQLite) and the broker's
   * confirm overlap instead of following one another. Safe with a store this server alone writes in order
   * ({@linkcode TaskStore.shared} unset): the record then always lands before any result of the task; and
   * with a shared one whose create completes the record a result from another server left first
   * ({@linkcode TaskStore.createCompletesOrphans}). When the record fails but the task was queued, the task is cancelled (workers drop it unless
   * it already started) and the submit answers the store's error, as when the record fails first.
   */
  async #recordWhilePublishing(
    client: ClientConnection,
    { newTask, broker, slot, ask, bulk }: _PlainSubmit,
  ): Promise<_Outcome> {
    const queued = this.#queueUnrecorded(client, { newTask, broker, slot, ask, bulk });
    const [recorded, published] = await Promise.allSettled([
      this.#deps.store.create(newTask),
      queued.published,
    ]);
    return await this.#settleUnrecorded(newTask, {
      target: queued.target,
      recorded,
      published,
      cancel: (taskId) => broker.publishControl({ type: "cancel", taskIds: [taskId] }),
    });
  }

  /**
   * {@linkcode #recordWhilePublishing} for the tasks of a slice of a `submit_many` that may be published
   * while recorded (see {@linkcode #publishableEarly}): `recording` is the slice's `createMany` of `plain`,
   * and `now` the places in it of the tasks to publish. They go as one: one result route for all of them
   * ({@linkcode ResultRouter.expectMany}) and one publish, with no promise per task; each task still gets its
   * own outcome. A keyed task's confirm is noted with `#markPublishedSoon`.
   */
  async #recordManyWhilePublishing(
    client: ClientConnection,
    { plain, now, recording, broker }: {
      plain: readonly _PlainTask[];
      now: readonly number[];
      recording: Promise<{ taskId: string; created: boolean }[]>;
      broker: ServerBroker;
    },
  ): Promise<_Outcome[]> {
    const { router } = this.#deps;
    const taskIds: string[] = [];
    const messages: TaskMessage[] = [];
    for (const k of now) {
      const { newTask, slot, ask } = plain[k]!;
      // Counted in flight from here: its result may come back before the broker's confirm does.
      slot?.track(newTask.taskId, ask);
      taskIds.push(newTask.taskId);
      messages.push(_taskMessage(newTask, undefined));
    }
    const target = router.expectMany(taskIds, client);
    const publishing = this.#publishManySurely(broker, { messages, target });
    // A repeat of a key (answered with its task once it is recorded) waits for this publish.
    const publishDone = publishing.then(() => {});
    for (const k of now) {
      const { newTask } = plain[k]!;
      if (newTask.idempotencyKey !== undefined) this.#inFlight.set(newTask.taskId, publishDone);
    }
    const [records, errors] = await Promise.all([
      recording.then(
        (value): PromiseSettledResult<{ taskId: string; created: boolean }[]> => ({
          status: "fulfilled",
          value,
        }),
        (reason: unknown): PromiseRejectedResult => ({ status: "rejected", reason }),
      ),
      publishing,
    ]);
    // Cancels of tasks queued whose record then failed: one control message for those of one turn.
    const cancel = _cancelBatcher(broker);
    const onPublished = (taskId: string) => this.#markPublishedSoon(taskId);
    const afterReply = () => router.acceptedAll(target);
    const outcomes: (_Outcome | Promise<_Outcome>)[] = [];
    now.forEach((k, j) => {
      const { newTask, slot } = plain[k]!;
      const { taskId } = newTask;
      let recorded: PromiseSettledResult<unknown> = records;
      if (records.status === "fulfilled" && records.value[k]?.created !== true) {
        // Cannot happen while this server alone writes: the key was free and held by none of its writes.
        recorded = {
          status: "rejected",
          reason: new ColmenaError("INTERNAL", {
            cause: new Error(`Cannot record task "${taskId}": its key was taken meanwhile`),
          }),
        };
      }
      const error = errors[j];
      const outcome = this.#settleUnrecorded(newTask, {
        target,
        recorded,
        published: error === undefined ? _FULFILLED : { status: "rejected", reason: error },
        cancel,
        onPublished,
        afterReply,
      });
      outcomes.push(
        outcome instanceof Promise // not accepted
          ? outcome.catch((err): _Outcome => ({ kind: "refused", error: _asColmenaError(err) }))
            .finally(() => slot?.release())
          : outcome, // accepted: tracked, its slot is in use
      );
    });
    return await _settleAll(outcomes);
  }

  /**
   * {@linkcode #publishSurely} for the tasks of a slice, published together (`ServerBroker.publishTasks`) and
   * again together after a lost confirm: resolves with each task's error, `undefined` once it is confirmed or
   * its result is held by `target` (see {@linkcode _resultHeld}).
   */
  async #publishManySurely(
    broker: ServerBroker,
    { messages, target }: { messages: readonly TaskMessage[]; target: PushTarget },
  ): Promise<unknown[]> {
    const deadline = Date.now() + this.#deps.config.publishRetryMs;
    const errors: unknown[] = new Array(messages.length).fill(undefined);
    const maybeStored = new Set<number>();
    const finished = (i: number) => target.held?.has(messages[i]!.taskId) === true;
    let places: number[] | undefined; // undefined: every task
    for (let attempt = 1;; attempt++) {
      const round = places === undefined ? messages : places.map((i) => messages[i]!);
      const outcomes = await _publishRound(broker, round, target);
      const failed: number[] = [];
      outcomes.forEach((err, r) => {
        const i = places === undefined ? r : places[r]!;
        if (err === undefined || finished(i)) {
          // Its result is in: it was queued and ran, and a copy would only run it again.
          if (err === undefined && attempt > 1) this.#deps.stats.republished++;
          errors[i] = undefined;
          return;
        }
        if (err instanceof ColmenaError && err.code === "PUBLISH_UNCONFIRMED") maybeStored.add(i);
        errors[i] = err;
        failed.push(i);
      });
      if (failed.length === 0) return errors;
      const left = deadline - Date.now();
      if (this.#deps.stopping() || left <= 0 || !(await broker.waitConnected(left))) {
        for (const i of failed) {
          if (maybeStored.has(i)) {
            errors[i] = new ColmenaError("PUBLISH_UNCONFIRMED", { cause: errors[i] });
          }
        }
        return errors;
      }
      // Those whose result came in meanwhile are not published again.
      places = failed.filter((i) => {
        if (!finished(i)) return true;
        errors[i] = undefined;
        return false;
      });
      if (places.length === 0) return errors;
      log.warn(`Confirmación perdida de ${places.length} tareas; se vuelven a publicar`);
    }
  }

  /**
   * Publishes a task whose record is under way: it is tracked (quota, result routing) from here, and
   * `published` settles with its confirm, or as soon as its result is held (recorded, queued and done).
   */
  #queueUnrecorded(
    client: ClientConnection,
    { newTask, broker, slot, ask, bulk }: _PlainSubmit,
  ): { target: PushTarget; published: Promise<void> } {
    const { taskId, idempotencyKey } = newTask;
    slot?.track(taskId, ask);
    const target = this.#deps.router.expect(taskId, client);
    const finished = _resultHeld(target);
    const publishing = this.#publishSurely(
      broker,
      _taskMessage(newTask, undefined),
      { finished: finished.seen, bulk },
    );
    // A repeat of the key (answered with this task once it is recorded) waits for this publish.
    if (idempotencyKey !== undefined) this.#inFlight.set(taskId, publishing.catch(() => {}));
    // The record lands before any result of the task: a result held means recorded, queued and done.
    return { target, published: Promise.race([publishing, finished.promise]) };
  }

  /**
   * The outcome of a task published while recorded, once both have settled (at once when accepted). When the record fails but the
   * task was queued, the task is cancelled (workers drop it unless it already started) and the submit
   * answers the store's error; when the publish fails, the record is removed (kept, for its key, when the
   * broker may have stored the task).
   */
  #settleUnrecorded(
    newTask: NewTask,
    { target, recorded, published, cancel, onPublished, afterReply }: {
      target: PushTarget;
      recorded: PromiseSettledResult<unknown>;
      published: PromiseSettledResult<unknown>;
      cancel: (taskId: string) => Promise<void>;
      onPublished?: (taskId: string) => void;
      /** Routes the task's result once answered; by default, `ResultRouter.accepted` of `target`. */
      afterReply?: () => void;
    },
  ): _Outcome | Promise<_Outcome> {
    const { store, router, stats, quotas } = this.#deps;
    const { taskId, taskType: type, idempotencyKey } = newTask;
    if (idempotencyKey !== undefined) this.#inFlight.delete(taskId);
    if (recorded.status === "fulfilled" && published.status === "fulfilled") {
      if (idempotencyKey !== undefined) onPublished?.(taskId);
      stats.accepted++;
      countTask(stats, "accepted", type);
      countAcceptedKind(stats, newTask.client.kind);
      return {
        kind: "accepted",
        reply: { taskId },
        afterReply: afterReply ?? (() => router.accepted(taskId, target)),
      };
    }
    stats.rejected++;
    countTask(stats, "rejected", type);
    router.abandon(taskId, target);
    return (async (): Promise<_Outcome> => {
      if (recorded.status === "fulfilled") {
        const reason = (published as PromiseRejectedResult).reason;
        if (
          idempotencyKey !== undefined && reason instanceof ColmenaError &&
          reason.code === "PUBLISH_UNCONFIRMED"
        ) {
          // As in `#publishRecorded`: the task may be queued, so its record stays for its key.
          log.warn(`La tarea ${taskId} quedó sin confirmar; se conserva su registro para su clave`);
          throw reason;
        }
        quotas?.finished(taskId);
        await store.remove(taskId).catch((e) =>
          log.error("No se pudo borrar una tarea rechazada", e)
        );
        throw reason;
      }
      quotas?.finished(taskId);
      // Queued, or maybe queued (a lost confirm): a cancel makes workers drop a copy without a record.
      const reason = published.status === "rejected" ? published.reason : undefined;
      if (
        published.status === "fulfilled" ||
        (reason instanceof ColmenaError && reason.code === "PUBLISH_UNCONFIRMED")
      ) {
        log.warn(`La tarea ${taskId} se publicó pero no se pudo registrar; se cancela`);
        await cancel(taskId).catch((e) =>
          log.error(`No se pudo cancelar la tarea ${taskId}, publicada sin registro`, e)
        );
      }
      throw recorded.reason;
    })();
  }

  /**
   * Publishes a task; when the confirm fails because the broker went away, waits for the reconnect and
   * publishes it again under the same id (a copy that did reach the queue is absorbed as a duplicate),
   * until `publishRetryMs` has passed. Rejects with `PUBLISH_UNCONFIRMED` when any attempt may have been
   * stored (outcome unknown), with `BROKER_UNAVAILABLE` when none was sent.
   */
  async #publishSurely(
    broker: ServerBroker,
    message: TaskMessage,
    { finished = () => false, bulk = false }: { finished?: () => boolean; bulk?: boolean } = {},
  ): Promise<void> {
    const deadline = Date.now() + this.#deps.config.publishRetryMs;
    let maybeStored = false;
    for (let attempt = 1;; attempt++) {
      try {
        await broker.publishTask(message, { bulk });
        if (attempt > 1) this.#deps.stats.republished++;
        return;
      } catch (err) {
        // Its result is in: it was queued and ran, and a copy would only run it again.
        if (finished()) return;
        maybeStored ||= err instanceof ColmenaError && err.code === "PUBLISH_UNCONFIRMED";
        const left = deadline - Date.now();
        if (this.#deps.stopping() || left <= 0 || !(await broker.waitConnected(left))) {
          throw maybeStored ? new ColmenaError("PUBLISH_UNCONFIRMED", { cause: err }) : err;
        }
        log.warn(`Confirmación perdida de la tarea ${message.taskId}; se vuelve a publicar`);
      }
    }
  }

  /**
   * A submit that reused an idempotency key: `accepted` with the first task's id (saying whether this
   * submit's task differs from it), then its result when it has one. Nothing of the repeat is recorded or
   * published; when the first task was never seen running, it is published again from its record.
   */
  async #repeated(
    client: ClientConnection,
    { broker, taskId, repeat }: {
      broker: ServerBroker;
      taskId: string;
      repeat: { type: string; payload: unknown; file: FileSpec | undefined };
    },
  ): Promise<_Outcome> {
    const store = this.#deps.store;
    await this.#inFlight.get(taskId);
    const view = await store.get(taskId);
    if (view === undefined) {
      // The first submit with this key failed meanwhile, and its record is gone.
      throw new ColmenaError("BROKER_UNAVAILABLE");
    }
    const first = await store.submission(taskId);
    const differs = first === undefined ? undefined : await this.#differs(first, repeat);
    if (
      first !== undefined && view.status === "queued" && (view.attempts ?? 0) === 0 &&
      !(await this.#confirmedMeanwhile(taskId, first.submittedAt))
    ) {
      // Never seen running, and its publish never confirmed by the deadline of the submit that recorded it:
      // that server died between the record and the broker's confirm (or the confirm was lost), so that no
      // copy may be queued. Publish it again under the same id; if a copy was queued after all (a lost
      // confirm), the task runs twice and the store keeps one result.
      const file = _recordedFile(first, repeat.file);
      if (first.fileRef === undefined || file !== undefined) {
        await this.#publishSurely(broker, {
          ..._taskMessage(first, file),
          origin: this.#deps.serverId,
        });
        this.#markPublished(taskId);
      } else {
        log.warn(
          `La tarea ${taskId} lee un fichero y su registro no dice en qué campo: no se vuelve a publicar`,
        );
      }
    }
    return {
      kind: "accepted",
      reply: {
        taskId,
        duplicate: true,
        ...(differs === undefined ? {} : { payloadDiffers: differs }),
      },
      afterReply: () => this.#deps.router.follow(taskId, client, view),
    };
  }

  /** Notes the broker's confirm of a keyed task in the store; a failure only costs a later repeat a wait. */
  #markPublished(taskId: string): void {
    this.#deps.store.markPublished(taskId).catch((err) =>
      log.warn(`No se pudo anotar la publicación de la tarea ${taskId}: ${String(err)}`)
    );
  }

  /**
   * Whether the publish of a recorded task is confirmed (or it started), waiting for it while the submit
   * that recorded it, on this server or another, may still be publishing: until its publish deadline
   * (`publishRetryMs`) and a margin have passed since it was submitted.
   */
  async #confirmedMeanwhile(taskId: string, submittedAt: string): Promise<boolean> {
    const { store, config } = this.#deps;
    const deadline = Date.parse(submittedAt) + config.publishRetryMs + CONFIRM_MARGIN_MS;
    for (;;) {
      if (await store.published(taskId)) return true;
      const view = await store.get(taskId);
      if (view === undefined || view.status !== "queued" || (view.attempts ?? 0) > 0) return true;
      if (Date.now() >= deadline || this.#deps.stopping()) return false;
      await new Promise((resolve) => setTimeout(resolve, CONFIRM_POLL_MS));
    }
  }

  /**
   * Whether a repeat's task differs from the first one's (type, validated payload or file), comparing
   * canonical JSON; `undefined` when the first payload cannot be read back (its object is gone).
   */
  async #differs(
    first: NewTask,
    repeat: { type: string; payload: unknown; file: FileSpec | undefined },
  ): Promise<boolean | undefined> {
    if (first.taskType !== repeat.type || first.fileRef !== repeat.file?.ref) return true;
    let recorded = first.payload;
    if (first.payloadRef !== undefined) {
      try {
        recorded = JSON.parse(decoder.decode(await this.#deps.blobs.get(first.payloadRef)));
      } catch {
        return undefined;
      }
    }
    return _canonicalJson(recorded) !== _canonicalJson(repeat.payload);
  }
}

/**
 * The file of a recorded task, to publish it again. The record keeps the file's key but not the payload
 * field it fills, so the field is taken from a repeat that names the same file; `undefined` otherwise.
 */
function _recordedFile(first: NewTask, repeatFile: FileSpec | undefined): FileSpec | undefined {
  if (first.fileRef === undefined || repeatFile?.ref !== first.fileRef) return undefined;
  return { ref: first.fileRef, field: repeatFile.field };
}

/**
 * Resolves once a result of the task is held for `target`: the task was recorded, queued and has ended, so
 * it can be answered `accepted` without waiting any longer for the broker's confirm of its publish (which,
 * for a task that ran at once, comes only after the worker's ack, itself after the result's confirm).
 */
function _resultHeld(target: PushTarget): { promise: Promise<void>; seen: () => boolean } {
  const { promise, resolve } = Promise.withResolvers<void>();
  let seen = false;
  target.onHeld = () => {
    seen = true;
    resolve();
  };
  return { promise, seen: () => seen };
}

/**
 * Cancels tasks in batches: the ids given within one turn (a slice whose record failed) go in one control
 * message, whose outcome each caller gets.
 */
function _cancelBatcher(broker: ServerBroker): (taskId: string) => Promise<void> {
  let taskIds: string[] = [];
  let sending: Promise<void> | undefined;
  return (taskId) => {
    taskIds.push(taskId);
    sending ??= new Promise((resolve) => setTimeout(resolve, 0)).then(() => {
      const batch = taskIds;
      taskIds = [];
      sending = undefined;
      return broker.publishControl({ type: "cancel", taskIds: batch });
    });
    return sending;
  };
}

/** The first attempt's message of a recorded task. */
function _taskMessage(task: NewTask, file: FileSpec | undefined): TaskMessage {
  return {
    v: QUEUE_FORMAT,
    taskId: task.taskId,
    type: task.taskType,
    payload: task.payload,
    client: task.client,
    origin: task.origin,
    priority: task.priority,
    timeoutMs: task.timeoutMs,
    submittedAt: task.submittedAt,
    attempt: 1,
    maxAttempts: task.maxAttempts,
    deliveries: 1,
    ...(task.payloadRef === undefined ? {} : { payloadRef: task.payloadRef }),
    ...(file === undefined ? {} : { file }),
  };
}

/** A placeholder outcome, replaced before it is read. */
const _STOPPING: _Outcome = { kind: "stopping" };

/** A publish that went through, shared by every task of a slice that got it. */
const _FULFILLED: PromiseFulfilledResult<undefined> = { status: "fulfilled", value: undefined };

/** The outcomes, once those still under way have settled: no promise for those settled already. */
async function _settleAll(outcomes: (_Outcome | Promise<_Outcome>)[]): Promise<_Outcome[]> {
  const places: number[] = [];
  const waiting: Promise<_Outcome>[] = [];
  outcomes.forEach((o, i) => {
    if (o instanceof Promise) {
      places.push(i);
      waiting.push(o);
    }
  });
  if (waiting.length > 0) {
    const settled = await Promise.all(waiting);
    places.forEach((i, j) => {
      outcomes[i] = settled[j]!;
    });
  }
  return outcomes as _Outcome[];
}

/**
 * One publish of a slice's tasks: resolves with each one's error (`undefined` once confirmed, or once its
 * result is held by `target`), in the order of `messages`.
 */
function _publishRound(
  broker: ServerBroker,
  messages: readonly TaskMessage[],
  target: PushTarget,
): Promise<unknown[]> {
  const { promise, resolve } = Promise.withResolvers<unknown[]>();
  const outcomes: unknown[] = new Array(messages.length).fill(undefined);
  const done = new Uint8Array(messages.length);
  let left = messages.length;
  if (left === 0) return Promise.resolve(outcomes);
  const settled = (index: number, error?: unknown) => {
    if (done[index] === 1) return;
    done[index] = 1;
    outcomes[index] = error;
    if (--left === 0) resolve(outcomes);
  };
  // A result held means recorded, queued and done: it is answered without waiting for its confirm.
  let places: Map<string, number> | undefined;
  target.onHeld = (taskId) => {
    places ??= new Map(messages.map((m, i) => [m.taskId, i]));
    const index = places.get(taskId);
    if (index !== undefined) settled(index);
  };
  broker.publishTasks(messages, { bulk: true, settled });
  return promise;
}
