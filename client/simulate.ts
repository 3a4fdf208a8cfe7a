/**
 * `simulate`: many concurrent clients, each on its own connection, sending a mix of tasks and checking
 * every result against what it sent.
 *
 * @module
 */
import { toColmenaError } from "../shared/errors.ts";
import type { ClientKind } from "../shared/protocol.ts";
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import { MISMATCH, type SimulatedTask, SimulationStats, type SimulationSummary } from "./stats.ts";
import { TaskClient } from "./task_client.ts";
import type { ClientTlsOptions } from "./tls.ts";
import { submitTask } from "./task_request.ts";
import { makeTask, type Random, simulatedTypes, verifyOutput } from "./workload.ts";

/** Progress of a running simulation, reported after every task. */
export interface SimulationProgress {
  readonly done: number;
  readonly failed: number;
  readonly total: number;
  /** Milliseconds since the first submit. */
  readonly elapsedMs: number;
}

/** Options of {@linkcode simulate}. */
export interface SimulationOptions {
  /** Server host. @defaultValue `"localhost"` */
  readonly host?: string;
  /** Server port. @defaultValue `8888` */
  readonly port?: number;
  /** Access token every simulated client sends in `hello`. @defaultValue none */
  readonly token?: string;
  /** TLS settings of every client's connection. @defaultValue plain TCP */
  readonly tls?: ClientTlsOptions;
  /** How many clients to simulate, each with its own connection. */
  readonly clients: number;
  /** Client kinds, given to the clients round-robin. */
  readonly kinds: readonly ClientKind[];
  /** Tasks in total, spread evenly among the clients. */
  readonly tasks: number;
  /** Task types to mix. @defaultValue every built-in type */
  readonly types?: readonly string[];
  /** The catalogue the task types come from (their sample payloads and checks). @defaultValue the built-in one */
  readonly catalog?: TaskCatalog;
  /** Tasks each client keeps in flight. @defaultValue `20` */
  readonly window?: number;
  /** Priority of every task. @defaultValue none (the server's default) */
  readonly priority?: number;
  /** Prefix of the clients' names. @defaultValue `"sim"` */
  readonly namePrefix?: string;
  /** Source of randomness for the payloads. @defaultValue `Math.random` */
  readonly random?: Random;
  /** Called with every finished task. */
  readonly onResult?: (task: SimulatedTask) => void;
  /** Called after every finished task. */
  readonly onProgress?: (progress: SimulationProgress) => void;
  /**
   * Stops the simulation (Ctrl-C): no more tasks are sent, and it resolves at once with the partial
   * summary of the tasks that had ended (`interrupted: true`); those still running are abandoned.
   */
  readonly signal?: AbortSignal;
}

/** Default number of tasks each simulated client keeps in flight. */
export const DEFAULT_WINDOW = 20;

/** How many of `total` tasks each of `clients` clients sends: an even split, the rest to the first ones. */
export function splitTasks(total: number, clients: number): number[] {
  return Array.from(
    { length: clients },
    (_, index) => Math.floor(total / clients) + (index < total % clients ? 1 : 0),
  );
}

interface _Plan {
  readonly name: string;
  readonly kind: ClientKind;
  readonly count: number;
  readonly offset: number;
}

/**
 * Runs a simulation and resolves with its summary once every task has ended, or with the partial summary
 * as soon as `signal` aborts.
 *
 * Rejects, after closing every connection, when any client cannot connect; task failures (errors, failed
 * results, outputs that do not match their input) are counted in the summary instead.
 */
export async function simulate(options: SimulationOptions): Promise<SimulationSummary> {
  const types = options.types ?? simulatedTypes(options.catalog);
  const window = options.window ?? DEFAULT_WINDOW;
  _check(options, types, window);
  const prefix = options.namePrefix ?? "sim";
  const plans: _Plan[] = [];
  for (const [index, count] of splitTasks(options.tasks, options.clients).entries()) {
    if (count === 0) break;
    const kind = options.kinds[index % options.kinds.length]!;
    plans.push({ name: `${prefix}-${kind}-${index + 1}`, kind, count, offset: index });
  }
  const clients = plans.map((plan) =>
    new TaskClient({
      ...(options.host === undefined ? {} : { host: options.host }),
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.token === undefined ? {} : { token: options.token }),
      ...options.tls,
      kind: plan.kind,
      name: plan.name,
      ...(options.catalog === undefined ? {} : { tasks: options.catalog.definitions() }),
    })
  );
  try {
    const connectStart = performance.now();
    const connected = await Promise.allSettled(clients.map((client) => client.connect()));
    const refused = connected.find((outcome) => outcome.status === "rejected");
    if (refused !== undefined) throw refused.reason;
    const connectMs = performance.now() - connectStart;

    const stats = new SimulationStats();
    const start = performance.now();
    let stopped = false;
    const record = (task: SimulatedTask): void => {
      // Tasks that end after an interruption (abandoned, or rejected as the connections close) do not count.
      if (stopped) return;
      stats.add(task);
      options.onResult?.(task);
      options.onProgress?.({
        done: stats.done,
        failed: stats.failed,
        total: options.tasks,
        elapsedMs: performance.now() - start,
      });
    };
    const context = {
      types,
      window,
      random: options.random ?? Math.random,
      priority: options.priority,
      catalog: options.catalog ?? BUILTIN_CATALOG,
      record,
      stopped: () => stopped,
    };
    const finished = await _untilAborted(
      Promise.all(plans.map((plan, i) => _runClient(clients[i]!, plan, context))),
      options.signal,
    );
    stopped = true;
    return stats.summarize({
      planned: options.tasks,
      interrupted: !finished,
      clients: plans.length,
      kinds: [...new Set(plans.map((plan) => plan.kind))],
      types,
      window,
      connectMs,
      elapsedMs: performance.now() - start,
    });
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

/** Waits for `work`; `true` when it ended, `false` when `signal` aborted first. */
async function _untilAborted(work: Promise<unknown>, signal?: AbortSignal): Promise<boolean> {
  if (signal === undefined) {
    await work;
    return true;
  }
  if (signal.aborted) return false;
  const aborted = Promise.withResolvers<boolean>();
  const onAbort = (): void => aborted.resolve(false);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await Promise.race([work.then(() => true), aborted.promise]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

function _check(options: SimulationOptions, types: readonly string[], window: number): void {
  if (!Number.isSafeInteger(options.clients) || options.clients < 1) {
    throw new RangeError(
      `Cannot simulate: clients must be a positive integer, got ${options.clients}`,
    );
  }
  if (!Number.isSafeInteger(options.tasks) || options.tasks < 0) {
    throw new RangeError(
      `Cannot simulate: tasks must be a non-negative integer, got ${options.tasks}`,
    );
  }
  if (!Number.isSafeInteger(window) || window < 1) {
    throw new RangeError(`Cannot simulate: window must be a positive integer, got ${window}`);
  }
  if (options.kinds.length === 0) throw new RangeError("Cannot simulate: kinds is empty");
  if (types.length === 0) throw new RangeError("Cannot simulate: types is empty");
}

interface _Context {
  readonly types: readonly string[];
  readonly window: number;
  readonly random: Random;
  readonly priority: number | undefined;
  readonly catalog: TaskCatalog;
  readonly record: (task: SimulatedTask) => void;
  /** Whether the simulation was interrupted: lanes send nothing more. */
  readonly stopped: () => boolean;
}

async function _runClient(client: TaskClient, plan: _Plan, context: _Context): Promise<void> {
  let next = 0;
  async function lane(): Promise<void> {
    while (next < plan.count && !context.stopped()) {
      const index = next++;
      const type = context.types[(plan.offset + index) % context.types.length]!;
      context.record(await _runTask(context, { client, plan, type }));
    }
  }
  await Promise.all(Array.from({ length: Math.min(context.window, plan.count) }, lane));
}

async function _runTask(
  context: _Context,
  job: { readonly client: TaskClient; readonly plan: _Plan; readonly type: string },
): Promise<SimulatedTask> {
  const { client, plan, type } = job;
  const catalog = context.catalog;
  const request = makeTask(type, context.random, catalog);
  const base = { client: plan.name, kind: plan.kind, type };
  let taskId: string | null = null;
  const start = performance.now();
  try {
    taskId = await submitTask(
      client,
      request,
      context.priority === undefined ? undefined : { priority: context.priority },
    );
    const result = await client.result(taskId);
    const latencyMs = performance.now() - start;
    const done = { ...base, taskId, worker: result.worker, latencyMs };
    if (result.status !== "succeeded") {
      return { ...done, ok: false, error: result.error.toWire() };
    }
    const mismatch = verifyOutput(request, result.output, catalog);
    return mismatch === undefined
      ? { ...done, ok: true, error: null }
      : { ...done, ok: false, error: { code: MISMATCH, message: mismatch } };
  } catch (err) {
    const error = toColmenaError(err);
    return { ...base, taskId, worker: null, latencyMs: null, ok: false, error: error.toWire() };
  }
}
