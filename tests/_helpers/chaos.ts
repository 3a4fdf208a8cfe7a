/**
 * Helpers of the chaos suite (`tests/chaos/`): its scale, the figures each test reports for
 * `deno task caos`, free ports, per-test data folders, a process's memory, the chaos worker, and counting
 * what a raw client received.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { QueueNames } from "../../shared/adapters/rabbitmq/names.ts";
import { type Frame, RawClient } from "./raw_client.ts";
import { RoleProcess } from "./processes.ts";

/**
 * How much bigger than by default the chaos tests run: `COLMENA_CAOS_ESCALA` (a positive number; `deno task
 * caos` sets it). The default, 1, keeps the whole suite within a few minutes on two cores.
 */
export const SCALE: number = (() => {
  const raw = Deno.env.get("COLMENA_CAOS_ESCALA");
  const n = raw === undefined || raw === "" ? 1 : Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    throw new RangeError(`Cannot read COLMENA_CAOS_ESCALA: "${raw}" is not a positive number`);
  }
  return n;
})();

/** `n` times the scale, rounded, at least 1. */
export function scaled(n: number): number {
  return Math.max(1, Math.round(n * SCALE));
}

/** What one chaos test did and saw, for the table in docs/reliability.md. */
export interface ChaosFigures {
  /** Short Spanish name of the scenario. */
  readonly escenario: string;
  /** Tasks accepted (or inputs sent, for the fuzzer). */
  readonly tareas: number;
  /** Faults injected, in words: `kill -9 de 1 worker`, `corte de 2 s`… */
  readonly fallos: string;
  /** Results received by clients. */
  readonly resultados: number;
  /** Results a client received twice or more for one task (must be 0). */
  readonly duplicadosEntregados: number;
  /** Duplicates the servers absorbed (re-run tasks, redelivered batches), when known. */
  readonly duplicadosAbsorbidos?: number;
  /** Accepted tasks without a result (must be 0). */
  readonly perdidas: number;
  /** Wall time of the scenario, in milliseconds. */
  readonly ms: number;
  /** Anything else worth a column: retries seen, BROKER_UNAVAILABLE answers, memory… */
  readonly notas?: string;
}

/** Appends one JSON line to the file `COLMENA_CAOS_INFORME` names; does nothing when it is unset. */
export async function report(figures: ChaosFigures): Promise<void> {
  const file = Deno.env.get("COLMENA_CAOS_INFORME");
  if (file === undefined || file === "") return;
  const line = JSON.stringify({ ...figures, escala: SCALE, fecha: new Date().toISOString() });
  await Deno.writeTextFile(file, line + "\n", { append: true });
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  return port;
}

/** A temporary folder, removed with what it holds when disposed. */
export async function tempDir(
  prefix = "colmena-caos-",
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * The resident memory (`VmRSS`) of a process, in KiB. Read with `cat`: Deno 2.9.6 asks for `--allow-all` to
 * read `/proc` directly, while `cat` only needs `--allow-run`.
 */
export async function rssKiB(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped" })
    .output();
  const match = new TextDecoder().decode(out.stdout).match(/^VmRSS:\s+(\d+)\s+kB$/m);
  if (match === null) throw new Error(`Cannot read VmRSS of process ${pid}`);
  return Number(match[1]);
}

/** Starts `tests/_helpers/chaos_worker.ts` (built-in tasks plus a poisoned `echo`) and waits until it is ready. */
export async function startChaosWorker(
  name: string,
  queues: QueueNames,
  extraArgs: string[] = [],
): Promise<RoleProcess> {
  const proc = new RoleProcess("tests/_helpers/chaos_worker.ts", [
    name,
    "--task-queue",
    queues.taskQueue,
    "--result-queue",
    queues.resultQueue,
    ...extraArgs,
  ]);
  try {
    await proc.waitFor(/^Worker .* listo/);
    return proc;
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** Polls `check` every 25 ms until it returns true; rejects naming `what` after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A task to submit: its type, payload and options. */
export interface TaskSpec {
  readonly type: string;
  readonly payload: unknown;
  readonly options?: Record<string, unknown>;
}

/**
 * Sends one `submit` per spec on a raw connection in a single write (pipelined), with request ids
 * `<prefix><i>`; returns those ids in order. Replies are read from `client.frames`.
 */
export async function sendSubmits(
  client: RawClient,
  prefix: string,
  specs: readonly TaskSpec[],
): Promise<string[]> {
  const ids = specs.map((_, i) => `${prefix}${i}`);
  const text = specs.map((spec, i) =>
    JSON.stringify({
      type: "submit",
      id: ids[i],
      task: { type: spec.type, payload: spec.payload },
      ...(spec.options === undefined ? {} : { options: spec.options }),
    }) + "\n"
  ).join("");
  await client.sendRaw(text);
  return ids;
}

/**
 * Waits for a reply to every one of `requestIds`, then splits them: the task ids of those `accepted`, and
 * how many were refused with `refusedCode` (the code an outage may answer). Any other reply fails the test.
 */
export async function acceptedOrRefused(
  client: RawClient,
  requestIds: readonly string[],
  refusedCode: string,
  timeoutMs: number,
): Promise<{ accepted: string[]; refused: number }> {
  await waitUntil(
    () => repliesById(client.frames).size >= requestIds.length,
    "a reply to every submit",
    timeoutMs,
  );
  const replies = repliesById(client.frames);
  const accepted: string[] = [];
  let refused = 0;
  for (const id of requestIds) {
    const reply = replies.get(id)!;
    if (reply.type === "accepted") accepted.push(String(reply.taskId));
    else if (reply.type === "error" && reply.code === refusedCode) refused++;
    else assert.fail(`Unexpected reply to ${id}: ${JSON.stringify(reply)}`);
  }
  return { accepted, refused };
}

/** The reply frame (not a `result`) to each request id received so far. */
export function repliesById(frames: readonly Frame[]): Map<string, Frame> {
  const replies = new Map<string, Frame>();
  for (const f of frames) {
    if (f.type !== "result" && typeof f.id === "string") replies.set(f.id, f);
  }
  return replies;
}

/** How many `result` frames arrived for each task id. */
export function resultCounts(frames: readonly Frame[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const f of frames) {
    if (f.type === "result") {
      const taskId = String(f.taskId);
      counts.set(taskId, (counts.get(taskId) ?? 0) + 1);
    }
  }
  return counts;
}

/** Of `counts`, the results beyond the first for each task: what a client received twice. */
export function extraResults(counts: ReadonlyMap<string, number>): number {
  let extra = 0;
  for (const n of counts.values()) extra += Math.max(0, n - 1);
  return extra;
}

/**
 * Asks a server (over a fresh raw connection) for the record of each task, pipelined, and returns the
 * records by task id.
 */
export async function fetchRecords(
  port: number,
  taskIds: readonly string[],
): Promise<Map<string, Frame>> {
  await using client = await RawClient.connect(port);
  const lines = taskIds.map((taskId, i) =>
    JSON.stringify({ type: "status", id: `q${i}`, taskId }) + "\n"
  );
  await client.sendRaw(lines.join(""));
  await waitUntil(
    () => client.frames.length >= taskIds.length,
    `${taskIds.length} status replies`,
  );
  const records = new Map<string, Frame>();
  for (const f of client.frames) {
    if (f.type === "task") records.set(String(f.taskId), f);
  }
  return records;
}

/** The counters a server prints when it stops gracefully, or `undefined` if it has not printed them. */
export function serverStopStats(
  lines: readonly string[],
): { accepted: number; results: number; duplicates: number } | undefined {
  for (const line of lines) {
    const m = line.match(
      /Servidor detenido: (\d+) tareas aceptadas, (\d+) resultados, (\d+) duplicados descartados/,
    );
    if (m) return { accepted: Number(m[1]), results: Number(m[2]), duplicates: Number(m[3]) };
  }
  return undefined;
}

/** `promise`, or a rejection naming `what` once `timeoutMs` has passed: a lost task fails instead of hanging. */
export async function withDeadline<T>(
  promise: Promise<T>,
  what: string,
  timeoutMs: number,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
