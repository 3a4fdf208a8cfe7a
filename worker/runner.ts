/**
 * The worker's engine: runs delivered tasks through their handlers and reports them in batches.
 *
 * Every result of one event-loop turn leaves in one persistent message; the tasks behind it are acknowledged
 * only after the broker confirmed that message, so a crash at any point leaves each task either reported or
 * still in the queue (at-least-once).
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { ColmenaError, type WireError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import type { TaskDelivery, WorkerBroker } from "../shared/ports.ts";
import { describeIssues } from "../shared/protocol.ts";
import type { ResultMessage, StartedNotice, TaskMessage } from "../shared/queue_messages.ts";
import type { Registration, TaskRegistry } from "./registry.ts";

/** Options of {@linkcode TaskRunner}. */
export interface TaskRunnerOptions {
  /** The worker's name, reported with every result. */
  name: string;
  /** The handlers. */
  registry: TaskRegistry;
  /** Print one line per task. @defaultValue `true` */
  verbose?: boolean;
}

interface Running {
  readonly delivery: TaskDelivery;
  readonly controller: AbortController;
}

/** Runs tasks and batches their reports; connect it to a broker with {@linkcode TaskRunner.attach}. */
export class TaskRunner {
  readonly #name: string;
  readonly #registry: TaskRegistry;
  readonly #verbose: boolean;
  #broker: WorkerBroker | undefined;
  readonly #running = new Map<string, Running>();
  #started: StartedNotice[] = [];
  #results: ResultMessage[] = [];
  #deliveries: TaskDelivery[] = [];
  #flushScheduled = false;
  readonly #publishing = new Set<Promise<void>>();
  #idle: PromiseWithResolvers<void> | undefined;
  #processed = 0;

  constructor(options: TaskRunnerOptions) {
    this.#name = options.name;
    this.#registry = options.registry;
    this.#verbose = options.verbose ?? true;
  }

  /** Sets the broker that results are published to. */
  attach(broker: WorkerBroker): void {
    this.#broker = broker;
  }

  /** Tasks in progress right now. */
  get inProgress(): number {
    return this.#running.size;
  }

  /** Tasks finished since start. */
  get processed(): number {
    return this.#processed;
  }

  /** Takes one delivery: validates it, runs its handler, and queues its report. */
  handle(delivery: TaskDelivery): void {
    const task = delivery.task;
    if (task === null) {
      log.warn("Mensaje de tarea ilegible; se envía a la cola de mensajes muertos");
      this.#broker?.discard(delivery);
      return;
    }
    const startedAt = new Date();
    const t0 = performance.now();
    const registration = this.#registry.get(task.type);
    if (registration === undefined) {
      this.#finish(delivery, task, startedAt, t0, {
        error: new ColmenaError("UNKNOWN_TASK_TYPE", {
          message: `Este worker no sabe ejecutar tareas "${task.type}"`,
        }).toWire(),
      });
      return;
    }
    const payload = registration.definition.input.safeParse(task.payload);
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
      });
    } catch (err) {
      this.#finish(delivery, task, startedAt, t0, { error: this.#failure(task, err) });
      return;
    }
    if (!(outcome instanceof Promise)) {
      this.#finish(delivery, task, startedAt, t0, this.#checkOutput(registration, task, outcome));
      return;
    }
    this.#running.set(task.taskId, { delivery, controller });
    this.#started.push({
      taskId: task.taskId,
      origin: task.origin,
      worker: this.#name,
      startedAt: startedAt.toISOString(),
      attempt: task.attempt,
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
      if (!this.#running.delete(task.taskId)) return;
      this.#finish(delivery, task, startedAt, t0, end);
    });
  }

  #checkOutput(
    registration: Registration,
    task: TaskMessage,
    output: unknown,
  ): { output: unknown } | { error: WireError } {
    const parsed = registration.definition.output.safeParse(output);
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

  #finish(
    delivery: TaskDelivery,
    task: TaskMessage,
    startedAt: Date,
    t0: number,
    end: { output: unknown } | { error: WireError },
  ): void {
    const durationMs = Math.round((performance.now() - t0) * 1000) / 1000;
    const result: ResultMessage = "output" in end
      ? {
        taskId: task.taskId,
        taskType: task.type,
        origin: task.origin,
        status: "succeeded",
        output: end.output,
        worker: this.#name,
        durationMs,
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        attempt: task.attempt,
      }
      : {
        taskId: task.taskId,
        taskType: task.type,
        origin: task.origin,
        status: "failed",
        error: end.error,
        worker: this.#name,
        durationMs,
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        attempt: task.attempt,
      };
    this.#results.push(result);
    this.#deliveries.push(delivery);
    this.#processed++;
    if (this.#verbose) {
      const mark = result.status === "succeeded" ? "✓" : `✗ ${result.error?.code}`;
      log.event(
        `[${this.#name}] ${mark} ${task.type} ${
          task.taskId.slice(0, 8)
        } (${durationMs} ms, cliente ${task.client.kind})`,
      );
    }
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    const broker = this.#broker;
    if (broker === undefined) return;
    const results = this.#results;
    const deliveries = this.#deliveries;
    // A task that ended in this batch needs no "started" notice of its own.
    const started = this.#started.filter((s) => this.#running.has(s.taskId));
    this.#started = [];
    this.#results = [];
    this.#deliveries = [];
    if (results.length === 0 && started.length === 0) return this.#checkIdle();
    const publish = broker.publishResults(started, results, deliveries).catch((err) => {
      // Unconfirmed: the tasks were not acknowledged, so the broker delivers them again.
      log.error(
        `No se pudieron publicar ${results.length} resultados; las tareas se volverán a entregar`,
        err,
      );
    }).finally(() => {
      this.#publishing.delete(publish);
      this.#checkIdle();
    });
    this.#publishing.add(publish);
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
    for (const [taskId, { delivery, controller }] of this.#running) {
      this.#running.delete(taskId);
      controller.abort(new ColmenaError("SHUTTING_DOWN"));
      this.#broker?.release(delivery);
    }
    await Promise.allSettled([...this.#publishing]);
  }
}
