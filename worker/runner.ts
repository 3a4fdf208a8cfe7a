/**
 * The worker's engine: runs delivered tasks through their handlers and reports them in batches.
 *
 * Every report of one event-loop turn leaves in one persistent message; the tasks behind it are acknowledged
 * only after the broker confirmed that message (and, for a retry or a dead letter, the task's copy), so a
 * crash at any point leaves each task either reported or still in the queue (at-least-once).
 *
 * A run whose connection closed before it ended (its delivery is stale: the broker requeued it) still
 * reports a success, which the store keeps if it is the first result of the task and absorbs otherwise; a
 * failure of such a run is dropped, since the run of the redelivery decides on retries and dead letters.
 *
 * @module
 */
import process from "node:process";
import { setImmediate } from "node:timers";
import { ColmenaError, ERRORS, type WireError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import type { BlobStore, TaskDelivery, WorkerBroker } from "../shared/ports.ts";
import { outputKey } from "../shared/blob_keys.ts";
import { describeIssues } from "../shared/protocol.ts";
import type {
  ResultMessage,
  RetryNotice,
  StartedNotice,
  TaskMessage,
} from "../shared/queue_messages.ts";
import { CANCEL_MEMORY_MS } from "../shared/queue_messages.ts";
import type { TaskLogger } from "../shared/task_definition.ts";
import type { Registration, TaskRegistry } from "./registry.ts";

const utf8Encoder = new TextEncoder();

/** Options of {@linkcode TaskRunner}. */
export interface TaskRunnerOptions {
  /** The worker's name, reported with every result. */
  name: string;
  /** The handlers. */
  registry: TaskRegistry;
  /** Print one line per task. @defaultValue `true` */
  verbose?: boolean;
  /** Wait before the 2nd attempt; doubles for each later one. @defaultValue `1000` */
  retryBaseMs?: number;
  /** Deliveries of one attempt (its worker died holding it) before the task fails for good. @defaultValue `5` */
  maxDeliveries?: number;
  /** Where payloads, files and outputs stored as objects live. */
  blobs?: BlobStore;
  /** Outputs larger than this (JSON characters) are stored as objects. @defaultValue `262144` */
  claimCheckBytes?: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

interface Running {
  readonly controller: AbortController;
}

/** One finished delivery waiting to be reported. */
interface Outcome {
  readonly delivery: TaskDelivery;
  readonly result?: ResultMessage;
  readonly retrying?: RetryNotice;
  /**
   * The confirm of a copy (next attempt, dead letter or stored output) that must come before the ack. A
   * copy that fails is made again (`copy`) after a growing wait, the delivery still unacknowledged.
   */
  copied?: Promise<void>;
  /** Makes the copy (again). */
  readonly copy?: () => Promise<void>;
  /** Failed copies so far. */
  copyFailures?: number;
}

/** Waits before the copies of a report are tried again: 1 s, doubling, at most 30 s. */
const COPY_RETRY_BASE_MS = 1_000;
const COPY_RETRY_MAX_MS = 30_000;

/** An outcome whose confirm is `copy()`'s, made now. */
function _withCopy(outcome: Omit<Outcome, "copied" | "copy">, copy: () => Promise<void>): Outcome {
  return { ...outcome, copy, copied: copy() };
}

/** Runs tasks and batches their reports; connect it to a broker with {@linkcode TaskRunner.attach}. */
export class TaskRunner {
  readonly #name: string;
  readonly #registry: TaskRegistry;
  readonly #verbose: boolean;
  readonly #retryBaseMs: number;
  readonly #maxDeliveries: number;
  readonly #blobs: BlobStore | undefined;
  readonly #claimCheckBytes: number;
  #broker: WorkerBroker | undefined;
  /**
   * Deliveries in progress. Keyed by delivery, not by task id: after a reconnect the same task can be
   * delivered again while its first run still goes on here, and each delivery must end (acked) on its own.
   */
  readonly #running = new Map<TaskDelivery, Running>();
  readonly #cancelled = new Map<string, number>();
  #started: { readonly delivery: TaskDelivery; readonly notice: StartedNotice }[] = [];
  #outcomes: Outcome[] = [];
  #flushScheduled = false;
  readonly #publishing = new Set<Promise<void>>();
  #idle: PromiseWithResolvers<void> | undefined;
  #processed = 0;
  #failed = 0;

  constructor(options: TaskRunnerOptions) {
    this.#name = options.name;
    this.#registry = options.registry;
    this.#verbose = options.verbose ?? true;
    this.#retryBaseMs = options.retryBaseMs ?? 1_000;
    this.#maxDeliveries = options.maxDeliveries ?? 5;
    this.#blobs = options.blobs;
    this.#claimCheckBytes = options.claimCheckBytes ?? 256 * 1024;
  }

  /** Sets the broker that reports are published to. */
  attach(broker: WorkerBroker): void {
    this.#broker = broker;
  }

  /** Tasks in progress right now. */
  get inProgress(): number {
    return this.#running.size;
  }

  /** Tasks finished since start (succeeded or failed for good). */
  get processed(): number {
    return this.#processed;
  }

  /** Tasks that failed for good since start. */
  get failed(): number {
    return this.#failed;
  }

  /**
   * Remembers cancelled tasks until {@linkcode CANCEL_MEMORY_MS} after `cancelledAt` (epoch ms, default
   * now): a delivery of one of them is dropped, acked and never run. At most 100 000 are kept, the oldest
   * forgotten first.
   */
  cancel(taskIds: readonly string[], cancelledAt: number = Date.now()): void {
    const until = cancelledAt + CANCEL_MEMORY_MS;
    if (until <= Date.now()) return;
    for (const taskId of taskIds) {
      this.#cancelled.delete(taskId);
      this.#cancelled.set(taskId, until);
    }
    if (this.#cancelled.size > 100_000) {
      const now = Date.now();
      for (const [taskId, expiry] of this.#cancelled) {
        if (expiry < now || this.#cancelled.size > 100_000) this.#cancelled.delete(taskId);
      }
    }
  }

  /** Takes one delivery: validates it, runs its handler, and queues its report. */
  handle(delivery: TaskDelivery): void {
    const task = delivery.task;
    const broker = this.#broker;
    if (task === null) {
      log.warn("Mensaje de tarea ilegible; se envía a la cola de mensajes muertos");
      broker?.discard(delivery);
      return;
    }
    const cancelledUntil = this.#cancelled.get(task.taskId);
    if (cancelledUntil !== undefined && cancelledUntil > Date.now()) {
      if (this.#verbose) {
        log.event(`[${this.#name}] ⊘ ${task.type} ${task.taskId.slice(0, 8)} cancelada`);
      }
      broker?.ack(delivery);
      return;
    }
    const startedAt = new Date();
    const t0 = performance.now();
    if (delivery.redelivered && broker !== undefined) {
      this.#countRedelivery(delivery, task, broker, startedAt, t0);
      return;
    }
    const registration = this.#registry.get(task.type);
    if (registration === undefined) {
      this.#finish(delivery, task, startedAt, t0, {
        error: new ColmenaError("UNKNOWN_TASK_TYPE", {
          message: `Este worker no sabe ejecutar tareas "${task.type}"`,
        }).toWire(),
      });
      return;
    }
    if (task.payloadRef === undefined && task.file === undefined) {
      this.#run(delivery, task, registration, task.payload, startedAt, t0);
      return;
    }
    // Claim check: fetch the payload (or the file) from the object store first.
    this.#running.set(delivery, { controller: new AbortController() });
    this.#fetchPayload(task, registration.definition.limits.maxPayloadBytes).then(
      (raw) => {
        // Gone from the map: handed back at shutdown while fetching.
        if (!this.#running.delete(delivery)) return;
        this.#run(delivery, task, registration, raw, startedAt, t0);
      },
      (err) => {
        if (!this.#running.delete(delivery)) return;
        this.#finish(delivery, task, startedAt, t0, { error: this.#failure(task, err) });
      },
    );
  }

  /**
   * The payload of a claim-checked task, with its file's text in its field. A file over the type's
   * `maxPayloadBytes` (a server with another catalogue let it through) fails the task before it is decoded.
   */
  async #fetchPayload(task: TaskMessage, maxBytes: number | undefined): Promise<unknown> {
    const blobs = this.#blobs;
    if (blobs === undefined) {
      throw new ColmenaError("BLOB_UNAVAILABLE", {
        message: "Este worker no tiene almacén de objetos para leer la tarea",
      });
    }
    let payload = task.payload;
    if (task.payloadRef !== undefined) {
      payload = JSON.parse(utf8.decode(await blobs.get(task.payloadRef)));
    }
    if (task.file !== undefined) {
      let text: string;
      const bytes = await blobs.get(task.file.ref);
      if (maxBytes !== undefined && bytes.length > maxBytes) {
        throw new ColmenaError("INVALID_PAYLOAD", {
          message:
            `El fichero (${bytes.length} bytes) supera el máximo de ${maxBytes} de "${task.type}"`,
        });
      }
      try {
        text = utf8.decode(bytes);
      } catch (err) {
        if (err instanceof ColmenaError) throw err;
        throw new ColmenaError("INVALID_PAYLOAD", {
          message: "El fichero no es texto UTF-8 válido",
          cause: err,
        });
      }
      payload = { ...(payload as Record<string, unknown> ?? {}), [task.file.field]: text };
    }
    return payload;
  }

  #run(
    delivery: TaskDelivery,
    task: TaskMessage,
    registration: Registration,
    rawPayload: unknown,
    startedAt: Date,
    t0: number,
  ): void {
    const payload = registration.definition.input.safeParse(rawPayload);
    if (!payload.success) {
      this.#finish(delivery, task, startedAt, t0, {
        error: new ColmenaError("INVALID_PAYLOAD", {
          message: `Datos no válidos para "${task.type}": ${describeIssues(payload.error)}`,
        }).toWire(),
      });
      return;
    }
    const controller = new AbortController();
    let outcome: unknown;
    try {
      outcome = registration.handler(payload.data, {
        signal: controller.signal,
        taskId: task.taskId,
        attempt: task.attempt,
        log: this.#taskLog(task),
      });
    } catch (err) {
      this.#finish(delivery, task, startedAt, t0, { error: this.#failure(task, err) });
      return;
    }
    if (!(outcome instanceof Promise)) {
      this.#finish(delivery, task, startedAt, t0, this.#checkOutput(registration, task, outcome));
      return;
    }
    this.#running.set(delivery, { controller });
    this.#started.push({
      delivery,
      notice: {
        taskId: task.taskId,
        origin: task.origin,
        worker: this.#name,
        startedAt: startedAt.toISOString(),
        attempt: task.attempt,
      },
    });
    this.#scheduleFlush();
    const timer = setTimeout(() => {
      controller.abort(
        new ColmenaError("TIMEOUT", {
          message: `La tarea superó su tiempo máximo de ${task.timeoutMs} ms`,
        }),
      );
    }, task.timeoutMs);
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener("abort", () => reject(controller.signal.reason), {
        once: true,
      });
    });
    Promise.race([outcome, aborted]).then(
      (output) => this.#checkOutput(registration, task, output),
      (err) => ({ error: this.#failure(task, err) }),
    ).then((end) => {
      clearTimeout(timer);
      // Gone from the map: handed back at shutdown, so it must not be reported.
      if (!this.#running.delete(delivery)) return;
      this.#finish(delivery, task, startedAt, t0, end);
    });
  }

  /**
   * A redelivered task's previous holder died (or handed it back). Count it in a copy so that a task that
   * kills every worker that runs it stops after `maxDeliveries`, instead of looping for ever.
   */
  #countRedelivery(
    delivery: TaskDelivery,
    task: TaskMessage,
    broker: WorkerBroker,
    startedAt: Date,
    t0: number,
  ): void {
    const deliveries = task.deliveries + 1;
    if (deliveries > this.#maxDeliveries) {
      this.#finish(delivery, task, startedAt, t0, {
        error: new ColmenaError("TASK_FAILED", {
          message: `La tarea se entregó ${task.deliveries} veces sin terminar; se abandona`,
        }).toWire(),
      }, { final: true });
      return;
    }
    const copied = broker.publishTaskCopy({ ...task, deliveries }, 0);
    this.#track(
      copied.then(() => broker.ack(delivery)).catch((err) => {
        log.error(
          `No se pudo volver a encolar la tarea ${task.taskId}; se volverá a entregar`,
          err,
        );
      }),
    );
  }

  /** The logger a handler gets: each line names the task's type and id. */
  #taskLog(task: TaskMessage): TaskLogger {
    const prefix = `[${task.type} ${task.taskId}] `;
    return {
      info: (message) => log.info(prefix + message),
      warn: (message) => log.warn(prefix + message),
      error: (message, cause) => log.error(prefix + message, cause),
    };
  }

  #checkOutput(
    registration: Registration,
    task: TaskMessage,
    output: unknown,
  ): { output: unknown } | { error: WireError } {
    const parsed = registration.definition.output.safeParse(output);
    const max = registration.definition.limits.maxOutputBytes;
    if (parsed.success && max !== undefined) {
      const bytes = utf8Encoder.encode(JSON.stringify(parsed.data)).length;
      if (bytes > max) {
        return {
          error: new ColmenaError("TASK_FAILED", {
            message:
              `La salida de "${task.type}" ocupa ${bytes} bytes y el límite del tipo es ${max}`,
          }).toWire(),
        };
      }
    }
    if (parsed.success) return { output: parsed.data };
    log.error(`El manejador de "${task.type}" devolvió una salida no válida`, parsed.error);
    return {
      error: new ColmenaError("TASK_FAILED", {
        message: `La tarea "${task.type}" devolvió un resultado no válido`,
      }).toWire(),
    };
  }

  #failure(task: TaskMessage, err: unknown): WireError {
    if (err instanceof ColmenaError) return err.toWire();
    // The handler's own text stays in the worker's log; the wire gets the code and a Spanish message.
    log.error(`La tarea ${task.taskId} (${task.type}) falló`, err);
    return new ColmenaError("TASK_FAILED", {
      message: `La tarea "${task.type}" falló al ejecutarse`,
    }).toWire();
  }

  /** The wait before attempt `attempt + 1`: `retryBaseMs`, doubled for each attempt after the first. */
  retryDelay(attempt: number): number {
    return Math.min(this.#retryBaseMs * 2 ** (attempt - 1), 300_000);
  }

  #finish(
    delivery: TaskDelivery,
    task: TaskMessage,
    startedAt: Date,
    t0: number,
    end: { output: unknown } | { error: WireError },
    options: { final?: boolean } = {},
  ): void {
    const durationMs = Math.round((performance.now() - t0) * 1000) / 1000;
    const broker = this.#broker;
    if ("error" in end && broker?.isStale(delivery)) {
      // The connection closed while it ran, so the broker requeued it: the run of that redelivery decides
      // whether it is retried or dead-lettered. A retry or a dead letter from here would fork the task.
      log.warn(
        `La tarea ${task.taskId} falló (${end.error.code}) tras perder la conexión con RabbitMQ; ` +
          "decide la ejecución de su nueva entrega",
      );
      this.#scheduleFlush();
      return;
    }
    if ("error" in end && broker !== undefined) {
      const retryable = ERRORS[end.error.code].retryable && !options.final;
      if (retryable && task.attempt < task.maxAttempts) {
        const delayMs = this.retryDelay(task.attempt);
        const next: TaskMessage = { ...task, attempt: task.attempt + 1, deliveries: 1 };
        this.#outcomes.push(_withCopy({
          delivery,
          retrying: {
            taskId: task.taskId,
            origin: task.origin,
            worker: this.#name,
            attempt: task.attempt,
            delayMs,
            error: end.error,
          },
        }, () => broker.publishTaskCopy(next, delayMs)));
        if (this.#verbose) {
          log.event(
            `[${this.#name}] ↻ ${task.type} ${
              task.taskId.slice(0, 8)
            } intento ${task.attempt}/${task.maxAttempts} ` +
              `falló (${end.error.code}); reintento en ${delayMs} ms`,
          );
        }
        this.#scheduleFlush();
        return;
      }
    }
    let copy: (() => Promise<void>) | undefined;
    let error: WireError | undefined;
    if ("error" in end) {
      error = end.error;
      if (ERRORS[end.error.code].retryable || options.final) {
        // Failed for good after its attempts: say so, and keep the task in the dead-letter queue.
        error = {
          code: end.error.code,
          message: `${end.error.message} (tras ${task.attempt} de ${task.maxAttempts} intentos)`,
        };
        const deadLetter = error;
        if (broker !== undefined) copy = () => broker.publishDeadLetter(task, deadLetter);
      }
    }
    const base = {
      taskId: task.taskId,
      taskType: task.type,
      origin: task.origin,
      worker: this.#name,
      durationMs,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      attempt: task.attempt,
    };
    let result: ResultMessage = error === undefined
      ? { ...base, status: "succeeded", output: "output" in end ? end.output : undefined }
      : { ...base, status: "failed", error };
    if (error === undefined && this.#blobs !== undefined) {
      const json = JSON.stringify(result.output);
      if (json.length > this.#claimCheckBytes) {
        // Claim check: a large output is stored as an object and the result only names it.
        const bytes = encoder.encode(json);
        const outputRef = outputKey(task.taskId);
        const blobs = this.#blobs;
        copy = () => blobs.put(outputRef, bytes);
        const { output: _output, ...rest } = result;
        result = { ...rest, outputRef, outputBytes: bytes.length };
      }
    }
    this.#outcomes.push(
      copy === undefined ? { delivery, result } : _withCopy({ delivery, result }, copy),
    );
    this.#processed++;
    if (error !== undefined) this.#failed++;
    if (this.#verbose) {
      const mark = error === undefined ? "✓" : `✗ ${error.code}`;
      log.event(
        `[${this.#name}] ${mark} ${task.type} ${
          task.taskId.slice(0, 8)
        } (${durationMs} ms, cliente ${task.client.kind})`,
      );
    }
    this.#scheduleFlush(true);
  }

  /**
   * Flushes the reports at the end of this turn (`setImmediate`), so that the tasks that end in it share one
   * message. A result (`result` set) with no report awaiting its confirm goes sooner, at `process.nextTick`,
   * once the current callback and its microtasks are done: with no load, it does not wait a turn. A lone
   * "started" notice keeps the turn's wait, so that a task ending in that turn needs none.
   */
  #scheduleFlush(result = false): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    if (result && this.#publishing.size === 0) process.nextTick(() => this.#flush());
    else setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    const broker = this.#broker;
    if (broker === undefined) return;
    const outcomes = this.#outcomes;
    // A task that ended in this batch needs no "started" notice of its own, nor one the broker requeued.
    const started = this.#started
      .filter((s) => this.#running.has(s.delivery) && !broker.isStale(s.delivery))
      .map((s) => s.notice);
    this.#started = [];
    this.#outcomes = [];
    if (outcomes.length === 0 && started.length === 0) return this.#checkIdle();
    const copies = outcomes.map((o) => o.copied ?? Promise.resolve());
    this.#track(
      Promise.allSettled(copies).then(async (settled) => {
        // A report whose copy was not confirmed is left out, its task not acknowledged, and the copy made
        // again later (the object store or the broker may be back by then).
        const ok = outcomes.filter((_, i) => settled[i]!.status === "fulfilled");
        const failed = outcomes.filter((_, i) => settled[i]!.status === "rejected");
        if (failed.length > 0) {
          log.error(
            `${failed.length} resultados o copias no se pudieron guardar; se reintentará`,
            settled.find((s) => s.status === "rejected")?.reason,
          );
          for (const outcome of failed) this.#retryCopy(outcome);
        }
        const results = ok.flatMap((o) => (o.result ? [o.result] : []));
        const retrying = ok.flatMap((o) => (o.retrying ? [o.retrying] : []));
        try {
          await broker.publishReports({ started, retrying, results }, ok.map((o) => o.delivery));
        } catch (err) {
          // Unconfirmed: the tasks were not acknowledged, so the broker delivers them again.
          log.error(
            `No se pudieron publicar ${results.length} resultados; las tareas se volverán a entregar`,
            err,
          );
        }
      }),
    );
  }

  /**
   * Makes a failed copy again after a growing wait, then reports the outcome with the next batch. A delivery
   * the broker took back meanwhile (its connection closed) is dropped: its redelivery decides.
   */
  #retryCopy(outcome: Outcome): void {
    const copy = outcome.copy;
    if (copy === undefined) return;
    const failures = (outcome.copyFailures ?? 0) + 1;
    outcome.copyFailures = failures;
    const delay = Math.min(COPY_RETRY_MAX_MS, COPY_RETRY_BASE_MS * 2 ** (failures - 1));
    this.#track(
      new Promise<void>((resolve) => setTimeout(resolve, delay)).then(() => {
        if (this.#broker === undefined || this.#broker.isStale(outcome.delivery)) return;
        outcome.copied = copy();
        this.#outcomes.push(outcome);
        this.#scheduleFlush();
      }),
    );
  }

  #track(work: Promise<void>): void {
    const tracked = work.finally(() => {
      this.#publishing.delete(tracked);
      this.#checkIdle();
    });
    this.#publishing.add(tracked);
  }

  #checkIdle(): void {
    if (
      this.#idle && this.#running.size === 0 && this.#publishing.size === 0 &&
      !this.#flushScheduled
    ) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }

  /**
   * Waits until every task in progress has finished and its report is confirmed, for at most `timeoutMs`;
   * tasks still running then are aborted and handed back to the queue unacknowledged.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#idle = Promise.withResolvers<void>();
    this.#checkIdle();
    const idle = this.#idle?.promise ?? Promise.resolve();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!timedOut) return;
    for (const [delivery, { controller }] of this.#running) {
      this.#running.delete(delivery);
      controller.abort(new ColmenaError("SHUTTING_DOWN"));
      this.#broker?.release(delivery);
    }
    await Promise.allSettled([...this.#publishing]);
  }
}
