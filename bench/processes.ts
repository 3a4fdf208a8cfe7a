/**
 * Child processes of the benchmark (servers, workers): start, wait for a ready line, sample memory and CPU
 * from `/proc`, stop.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };

/** How many of a child's last output lines are kept, to explain a failure. */
const TAIL_LINES = 40;
/** How many of a child's warning and error lines are kept for the report. */
const WARNING_LINES = 20;

/** Memory of one process, in KiB, from `/proc/<pid>/status`. */
export interface MemorySample {
  /** Resident set size now (`VmRSS`). */
  rssKiB: number;
  /** Peak resident set size (`VmHWM`). */
  peakKiB: number;
}

/**
 * The `--v8-flags=…` that `deno task servidor` or `deno task worker` gives its role (from `deno.json`), so
 * that the benchmark runs each role with the heap settings it has in use; `[]` when the task has none.
 */
export function roleV8Flags(role: "servidor" | "worker"): string[] {
  const task = (denoJson.tasks as Record<string, string>)[role] ?? "";
  return task.split(/\s+/).filter((part) => part.startsWith("--v8-flags="));
}

interface LineWaiter {
  readonly pattern: RegExp;
  readonly resolve: (match: RegExpMatchArray) => void;
}

/** A running child whose stdout and stderr are read line by line for its whole life. */
export class ChildProcess {
  /** A name for people, e.g. `servidor` or `worker 1`. */
  readonly name: string;
  readonly #child: Deno.ChildProcess;
  readonly #tail: string[] = [];
  #waiters: LineWaiter[] = [];
  readonly #status: Promise<Deno.CommandStatus>;
  #exited = false;

  private constructor(name: string, child: Deno.ChildProcess) {
    this.name = name;
    this.#child = child;
    this.#status = child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#pump(child.stdout);
    this.#pump(child.stderr);
  }

  /** Starts `deno <args>` in `cwd`, with piped output and no stdin. */
  static spawn(name: string, options: { args: readonly string[]; cwd: string }): ChildProcess {
    const child = new Deno.Command(Deno.execPath(), {
      args: [...options.args],
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new ChildProcess(name, child);
  }

  /** The child's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** The first lines it printed that start with `ERROR` or `AVISO`. */
  readonly warnings: string[] = [];

  /** The last lines it printed, stdout and stderr mixed. */
  get tail(): readonly string[] {
    return this.#tail;
  }

  /**
   * Resolves with the match of the first line (already printed or to come) that matches `pattern`; rejects
   * when the child exits first or `timeoutMs` passes.
   */
  async waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    for (const line of this.#tail) {
      const match = line.match(pattern);
      if (match !== null) return match;
    }
    const { promise, resolve } = Promise.withResolvers<RegExpMatchArray>();
    const waiter: LineWaiter = { pattern, resolve };
    this.#waiters.push(waiter);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), timeoutMs);
    });
    try {
      const outcome = await Promise.race([promise, timedOut, this.#status]);
      if (Array.isArray(outcome)) return outcome;
      const why = outcome === "timeout"
        ? `no imprimió ${pattern} en ${timeoutMs} ms`
        : `terminó (código ${outcome.code}) antes de imprimir ${pattern}`;
      throw new Error(`${this.name} ${why}. Últimas líneas:\n  ${this.#tail.join("\n  ")}`);
    } finally {
      clearTimeout(timer);
      this.#waiters = this.#waiters.filter((w) => w !== waiter);
    }
  }

  /** Its memory now, or `undefined` once it has exited or `/proc` cannot be read. */
  async memory(): Promise<MemorySample | undefined> {
    return this.#exited ? undefined : await readMemory(this.pid);
  }

  /** CPU time it has used (user + system), in clock ticks; `undefined` once exited. */
  async cpuTicks(): Promise<number | undefined> {
    return this.#exited ? undefined : await readCpuTicks(this.pid);
  }

  /** CPU time its main thread (the event loop) has used, in clock ticks; `undefined` once exited. */
  async mainThreadTicks(): Promise<number | undefined> {
    return this.#exited ? undefined : await readCpuTicks(this.pid, this.pid);
  }

  /** Sends SIGTERM and waits up to `timeoutMs` for the exit, then SIGKILL. */
  async stop(timeoutMs: number): Promise<Deno.CommandStatus> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // already gone
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    const status = await Promise.race([this.#status, timedOut]);
    clearTimeout(timer);
    if (status !== undefined) return status;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already gone
    }
    return await this.#status;
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        const lines = (rest + text).split("\n");
        rest = lines.pop() ?? "";
        for (const line of lines) this.#line(line);
      }
    } catch {
      // the pipe broke because the child died; its status says why
    }
    if (rest !== "") this.#line(rest);
  }

  #line(line: string): void {
    this.#tail.push(line);
    if (this.#tail.length > TAIL_LINES) this.#tail.shift();
    if (/^(ERROR|AVISO)/.test(line) && this.warnings.length < WARNING_LINES) {
      this.warnings.push(line);
    }
    for (const waiter of this.#waiters) {
      const match = line.match(waiter.pattern);
      if (match !== null) waiter.resolve(match);
    }
  }
}

// Deno 2.9.6 asks for --allow-all before it lets a program read anything under /proc, even with
// --allow-read; the `bench` task grants --allow-run instead, so /proc is read through `cat`.

/** Reads a file under `/proc` through `cat`; `undefined` when it cannot be read (e.g. the process ended). */
export async function readProcFile(path: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/** Reads `VmRSS` and `VmHWM` of a process; `undefined` when `/proc` cannot be read. */
export async function readMemory(pid: number): Promise<MemorySample | undefined> {
  const text = await readProcFile(`/proc/${pid}/status`);
  if (text === undefined) return undefined;
  const field = (name: string): number => {
    const match = text.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"));
    return match === null ? NaN : Number(match[1]);
  };
  return { rssKiB: field("VmRSS"), peakKiB: field("VmHWM") };
}

/**
 * Reads user + system CPU time of a process, or of one of its threads (its main thread's id is the
 * process id), in clock ticks; `undefined` when `/proc` cannot be read.
 */
export async function readCpuTicks(pid: number, thread?: number): Promise<number | undefined> {
  const text = await readProcFile(
    thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`,
  );
  if (text === undefined) return undefined;
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return Number(fields[11]) + Number(fields[12]);
}

/** Machine-wide CPU time since boot, in clock ticks, from the first line of `/proc/stat`. */
export interface MachineCpu {
  /** Time all cores spent running anything: user, nice, system, irq and softirq. */
  busy: number;
  /** Time the hypervisor gave to other guests while this one wanted to run. */
  steal: number;
}

/** Reads machine-wide CPU time; `undefined` when `/proc/stat` cannot be read. */
export async function readMachineCpu(): Promise<MachineCpu | undefined> {
  const text = await readProcFile("/proc/stat");
  const line = text?.split("\n")[0];
  if (line === undefined || !line.startsWith("cpu ")) return undefined;
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = line.trim().split(/\s+/)
    .slice(1).map(Number);
  return {
    busy: (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0),
    steal: steal ?? 0,
  };
}

/** The process id of the local RabbitMQ (`beam.smp`, found with `pgrep`), if it runs on this machine. */
export async function findBrokerPid(): Promise<number | undefined> {
  try {
    const out = await new Deno.Command("pgrep", {
      args: ["-x", "beam.smp"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const first = new TextDecoder().decode(out.stdout).trim().split("\n")[0];
    return out.success && first !== undefined && /^\d+$/.test(first) ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

/** The CPU model from `/proc/cpuinfo`. */
export async function readCpuModel(): Promise<string> {
  const text = await readProcFile("/proc/cpuinfo");
  return text?.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "desconocido";
}

/** Clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked. */
export async function clockTicksPerSecond(): Promise<number> {
  try {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output();
    const value = Number(new TextDecoder().decode(out.stdout).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
}

/** The process ids of the local PostgreSQL (`postgres` processes, found with `pgrep`); none when it is elsewhere. */
export async function findPostgresPids(): Promise<number[]> {
  try {
    const out = await new Deno.Command("pgrep", {
      args: ["-x", "postgres"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return [];
    return new TextDecoder().decode(out.stdout).split("\n").filter((line) => /^\d+$/.test(line))
      .map(Number);
  } catch {
    return [];
  }
}

/** The process id of the local Redis (`redis-server`, found with `pgrep`), if it runs on this machine. */
export async function findRedisPid(): Promise<number | undefined> {
  try {
    const out = await new Deno.Command("pgrep", {
      args: ["-x", "redis-server"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const first = new TextDecoder().decode(out.stdout).trim().split("\n")[0];
    return out.success && first !== undefined && /^\d+$/.test(first) ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}
