/**
 * Load against a real colmena server over raw TCP: C connections, each keeping W `submit` frames in flight.
 *
 * No client library: the frames are written by hand, pipelined, and a task counts as done when its `result`
 * push arrives. Its latency runs from the moment its `submit` was queued for writing to the moment the chunk
 * holding its `result` was read.
 *
 * @module
 */
import { TaskClient } from "../client.ts";
import type { RoundResult } from "./stats.ts";

/** Options of {@linkcode runColmenaRound}. */
export interface ColmenaRoundOptions {
  host: string;
  port: number;
  /** TCP connections. */
  clients: number;
  /** `submit`s in flight per connection: sent and not yet answered by a `result` or an `error`. */
  window: number;
  /** Tasks in the whole round, spread evenly over the connections. */
  tasks: number;
  /** Encoded task specs (`{"type":…,"payload":…}`), cycled through. */
  taskSpecs: readonly string[];
  /** The round gives up after this long. */
  timeoutMs: number;
}

/** What the connections of one round share. */
class _Tally {
  readonly latencies: Float64Array;
  latencyCount = 0;
  readonly acceptLatencies: Float64Array;
  acceptCount = 0;
  completed = 0;
  failed = 0;
  errors = 0;
  lastResultAt = 0;
  #spec = 0;
  readonly #specs: readonly string[];

  constructor(tasks: number, specs: readonly string[]) {
    this.latencies = new Float64Array(tasks);
    this.acceptLatencies = new Float64Array(tasks);
    this.#specs = specs;
  }

  nextSpec(): string {
    const spec = this.#specs[this.#spec]!;
    this.#spec = (this.#spec + 1) % this.#specs.length;
    return spec;
  }
}

/** The loose shape of a reply frame; only these fields are read. */
interface ReplyFields {
  type?: unknown;
  id?: unknown;
  taskId?: unknown;
  status?: unknown;
}

const encoder = new TextEncoder();

/** One pipelined connection. */
class _LoadClient {
  readonly #conn: Deno.TcpConn;
  readonly #quota: number;
  readonly #window: number;
  readonly #tally: _Tally;
  #sent = 0;
  #done = 0;
  #nextId = 0;
  readonly #submittedAt = new Map<string, number>();
  readonly #taskStartedAt = new Map<string, number>();
  #out: string[] = [];
  #writing = false;
  #problem: string | null = null;

  constructor(conn: Deno.TcpConn, quota: number, window: number, tally: _Tally) {
    this.#conn = conn;
    this.#quota = quota;
    this.#window = window;
    this.#tally = tally;
  }

  /** Sends and reads until its quota is done; resolves with a problem, or `null` when all went well. */
  async run(): Promise<string | null> {
    if (this.#quota === 0) return null;
    this.#topUp();
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(256 * 1024);
    let rest = "";
    while (this.#done < this.#quota && this.#problem === null) {
      let n: number | null;
      try {
        n = await this.#conn.read(buffer);
      } catch (err) {
        return this.#problem ?? `error de lectura: ${err instanceof Error ? err.message : err}`;
      }
      if (n === null) return this.#problem ?? "el servidor cerró la conexión";
      const now = performance.now();
      const lines = (rest + decoder.decode(buffer.subarray(0, n), { stream: true })).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) {
        if (line !== "") this.#onLine(line, now);
      }
      if (this.#done < this.#quota) this.#topUp();
    }
    return this.#problem;
  }

  #onLine(line: string, now: number): void {
    const frame = JSON.parse(line) as ReplyFields;
    const tally = this.#tally;
    switch (frame.type) {
      case "accepted": {
        const id = String(frame.id);
        const t0 = this.#submittedAt.get(id);
        this.#submittedAt.delete(id);
        if (t0 === undefined) return;
        this.#taskStartedAt.set(String(frame.taskId), t0);
        tally.acceptLatencies[tally.acceptCount++] = now - t0;
        return;
      }
      case "result": {
        const taskId = String(frame.taskId);
        const t0 = this.#taskStartedAt.get(taskId);
        if (t0 === undefined) {
          tally.errors++;
          return;
        }
        this.#taskStartedAt.delete(taskId);
        tally.latencies[tally.latencyCount++] = now - t0;
        tally.completed++;
        tally.lastResultAt = now;
        if (frame.status !== "succeeded") tally.failed++;
        this.#done++;
        return;
      }
      case "error": {
        tally.errors++;
        const id = typeof frame.id === "string" ? frame.id : null;
        if (id !== null && this.#submittedAt.delete(id)) this.#done++;
        return;
      }
      default:
        return;
    }
  }

  #topUp(): void {
    let text = "";
    const now = performance.now();
    while (this.#sent - this.#done < this.#window && this.#sent < this.#quota) {
      const id = (this.#nextId++).toString(36);
      text += `{"type":"submit","id":"${id}","task":${this.#tally.nextSpec()}}\n`;
      this.#submittedAt.set(id, now);
      this.#sent++;
    }
    if (text === "") return;
    this.#out.push(text);
    if (!this.#writing) this.#writeLoop();
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#out.length > 0) {
        const bytes = encoder.encode(this.#out.join(""));
        this.#out = [];
        let offset = 0;
        while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
      }
    } catch (err) {
      this.#problem ??= `error de escritura: ${err instanceof Error ? err.message : err}`;
    } finally {
      this.#writing = false;
    }
  }
}

/** Runs one round against the server at `host:port` and returns what it measured. */
export async function runColmenaRound(options: ColmenaRoundOptions): Promise<RoundResult> {
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < options.clients; i++) {
      const conn = await Deno.connect({ hostname: options.host, port: options.port });
      conn.setNoDelay(true);
      conns.push(conn);
    }
    const tally = new _Tally(options.tasks, options.taskSpecs);
    const base = Math.floor(options.tasks / options.clients);
    const extra = options.tasks % options.clients;
    const clients = conns.map((conn, i) =>
      new _LoadClient(conn, base + (i < extra ? 1 : 0), options.window, tally)
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<string>((resolve) => {
      timer = setTimeout(
        () => resolve("se alcanzó el tiempo límite de la ronda"),
        options.timeoutMs,
      );
    });
    const start = performance.now();
    const finished = Promise.all(clients.map((c) => c.run())).then((problems) =>
      problems.find((p) => p !== null) ?? null
    );
    const problem = await Promise.race([finished, timedOut]);
    clearTimeout(timer);
    return {
      planned: options.tasks,
      completed: tally.completed,
      failed: tally.failed,
      errors: tally.errors,
      elapsedMs: (tally.lastResultAt || performance.now()) - start,
      latencies: tally.latencies,
      latencyCount: tally.latencyCount,
      acceptLatencies: tally.acceptLatencies,
      acceptCount: tally.acceptCount,
      problem,
    };
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }
}

/**
 * Submits `tasks` tasks to a colmena server with `TaskClient.submitMany`, `bulk` at a time and one call
 * after another, from one client; returns the elapsed milliseconds. The counterpart of BullMQ's
 * `addBulk` measure: a task counts once the server answered it accepted (recorded and confirmed by the
 * broker). Throws when any task is refused.
 */
export async function measureSubmitMany(
  options: {
    host: string;
    port: number;
    tasks: number;
    bulk: number;
    taskSpecs: readonly string[];
  },
): Promise<number> {
  const specs = options.taskSpecs.map((spec) =>
    JSON.parse(spec) as { type: string; payload: unknown }
  );
  await using client = new TaskClient({
    host: options.host,
    port: options.port,
    name: "bench-lotes",
  });
  await client.connect();
  const start = performance.now();
  let seq = 0;
  for (let left = options.tasks; left > 0; left -= options.bulk) {
    const batch = [];
    for (let i = 0; i < Math.min(options.bulk, left); i++, seq++) {
      batch.push(specs[seq % specs.length]!);
    }
    const items = await client.submitManyUnchecked(batch);
    const refused = items.find((item) => !item.ok);
    if (refused !== undefined && !refused.ok) {
      throw new Error(`submitMany rechazó una tarea: ${refused.error.message}`);
    }
  }
  return performance.now() - start;
}
