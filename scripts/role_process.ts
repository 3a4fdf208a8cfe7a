/**
 * Runs a colmena role (`server.ts`, `worker.ts`, a test worker) as a child Deno process, collects its
 * output lines, waits for a given line, and stops it: shared by `deno task demo` and the tests.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** Options of {@linkcode RoleProcess}. */
export interface RoleProcessOptions {
  /** Environment of the child, besides `NO_COLOR=1`. */
  env?: Record<string, string>;
  /** Called with each line the child prints, on stdout or stderr. */
  onLine?: (line: string) => void;
  /**
   * Run `deno task <script> <args…>` (a task of deno.json, with its own permissions) instead of
   * `deno run <broad permissions> <script> <args…>`.
   */
  denoTask?: boolean;
  /** Run this program with `commandArgs` instead of Deno (a balancer in the tests); `script` is ignored. */
  command?: string;
  /** The arguments of `command`. */
  commandArgs?: string[];
}

/** A child process whose output lines are collected, and that can be awaited for a line. */
export class RoleProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly #pumps: Promise<void>[];
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;

  readonly #onLine: ((line: string) => void) | undefined;

  constructor(script: string, args: string[], options: RoleProcessOptions = {}) {
    this.#onLine = options.onLine;
    this.#child = new Deno.Command(options.command ?? Deno.execPath(), {
      args: options.command !== undefined
        ? options.commandArgs ?? []
        : options.denoTask
        ? ["task", "-q", script, ...args]
        : [
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
      env: { NO_COLOR: "1", ...options.env },
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
    this.#onLine?.(line);
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
