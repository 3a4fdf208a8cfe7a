/**
 * Starts the real `server.ts` and `worker.ts` as child processes for end-to-end tests, on unique queue
 * names and a free port, and stops them in `await using` scope.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { deleteTopology, type QueueNames } from "../../shared/adapters/rabbitmq.ts";
import { AMQP_URL } from "./services.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Unique queue names for one test, so tests never share a broker queue. */
export function uniqueQueues(label = "t"): QueueNames & AsyncDisposable {
  const id = crypto.randomUUID().slice(0, 8);
  const names = {
    taskQueue: `test.${label}.${id}.tasks`,
    resultQueue: `test.${label}.${id}.results`,
  };
  return {
    ...names,
    async [Symbol.asyncDispose]() {
      await deleteTopology(AMQP_URL, names).catch(() => {});
    },
  };
}

/** A child process whose output lines are collected, and that can be awaited for a line. */
export class RoleProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly #pumps: Promise<void>[];
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;

  constructor(script: string, args: string[], env: Record<string, string> = {}) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-write",
        "--allow-sys=hostname",
        script,
        ...args,
      ],
      cwd: ROOT,
      env: { AMQP_URL, NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pumps = [this.#pump(this.#child.stdout), this.#pump(this.#child.stderr)];
    this.status = this.#child.status.then((s) => {
      this.#exited = true;
      return s;
    });
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      for (const line of parts) this.#line(line);
    }
    if (rest) this.#line(rest);
  }

  #line(line: string): void {
    this.lines.push(line);
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const waiter = this.#waiters[i]!;
      const match = line.match(waiter.re);
      if (match) {
        this.#waiters.splice(i, 1);
        waiter.resolve(match);
      }
    }
  }

  /** Resolves with the first line (already printed or to come) that matches, or rejects after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    for (const line of this.lines) {
      const match = line.match(re);
      if (match) return Promise.resolve(match);
    }
    const { promise, resolve, reject } = Promise.withResolvers<RegExpMatchArray>();
    const waiter = { re, resolve };
    this.#waiters.push(waiter);
    const timer = setTimeout(() => {
      const i = this.#waiters.indexOf(waiter);
      if (i >= 0) this.#waiters.splice(i, 1);
      reject(
        new Error(
          `No line matched ${re} within ${timeoutMs} ms; output:\n${this.lines.join("\n")}`,
        ),
      );
    }, timeoutMs);
    return promise.finally(() => clearTimeout(timer));
  }

  /** Sends a signal (if still running). */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** Stops the process with SIGTERM (SIGKILL after 10 s) and waits for it and its output. */
  async stop(): Promise<Deno.CommandStatus> {
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), 10_000);
    const status = await this.status;
    clearTimeout(timer);
    await Promise.all(this.#pumps);
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** A running server process and the port it listens on. */
export interface ServerProcess extends RoleProcess {
  readonly port: number;
}

/** Starts `server.ts` on 127.0.0.1 and a free port, and waits until it listens. */
export async function startServer(
  queues: QueueNames,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): Promise<RoleProcess & { port: number }> {
  const proc = new RoleProcess("server.ts", [
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--task-queue",
    queues.taskQueue,
    "--result-queue",
    queues.resultQueue,
    ...extraArgs,
  ], env);
  try {
    const match = await proc.waitFor(/^Escuchando en 127\.0\.0\.1:(\d+)$/);
    return Object.assign(proc, { port: Number(match[1]) });
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** Starts `worker.ts` with a name, and waits until it is ready. */
export async function startWorker(
  name: string,
  queues: QueueNames,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): Promise<RoleProcess> {
  const proc = new RoleProcess("worker.ts", [
    name,
    "--task-queue",
    queues.taskQueue,
    "--result-queue",
    queues.resultQueue,
    ...extraArgs,
  ], env);
  try {
    await proc.waitFor(/^Worker .* listo/);
    return proc;
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** A temporary folder for one test's `--data-dir` (SQLite file, objects), removed on disposal. */
export async function tempDataDir(): Promise<{ readonly path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "colmena-e2e-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}
