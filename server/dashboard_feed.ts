/**
 * The dashboard's live feed: one snapshot of the server's state per second (workers, queue depths, recent
 * tasks, failures, counts, and a per-second series of tasks finished and their latency over the last
 * minutes), sent to every subscriber as Server-Sent Events.
 *
 * Each snapshot is built once and serialised once, whatever the number of subscribers, and only while there
 * are some. A subscriber that has not taken the previous snapshot misses the next one instead of queueing
 * it, so each costs at most one snapshot of memory. The number of subscribers is capped. `close()` (server
 * drain) sends each a last `fin` event and ends every stream.
 *
 * @module
 */
import * as log from "../shared/log.ts";
import type { QueueDepth, TaskStore } from "../shared/ports.ts";
import type { TaskView } from "../shared/protocol.ts";
import type { ServerStats } from "./stats.ts";
import type { WorkerView } from "./worker_registry.ts";

/** Seconds of history the charts show. */
export const SERIES_SECONDS = 300;
/** Event streams open at once; one more is answered 503. */
export const MAX_SUBSCRIBERS = 64;
/** Recent tasks and failures shown. */
const RECENT_TASKS = 15;
const RECENT_FAILURES = 8;
/** How long queue depths read from the broker are reused (for `/metrics` as for the dashboard). */
const DEPTHS_TTL_MS = 1_000;

/** One second of the series: tasks finished (ok and failed) and their mean latency, in ms. */
export interface SeriesPoint {
  /** The second's end, in ms since the epoch. */
  readonly t: number;
  readonly succeeded: number;
  readonly failed: number;
  /** Mean submit→result latency of the tasks answered in that second, or `null` when none was. */
  readonly latencyMs: number | null;
}

/** A task as the dashboard lists it. */
export type TaskSummary = Pick<
  TaskView,
  | "taskId"
  | "taskType"
  | "status"
  | "client"
  | "submittedAt"
  | "finishedAt"
  | "worker"
  | "durationMs"
  | "attempts"
  | "error"
>;

/** Everything the dashboard shows at one moment. */
export interface DashboardSnapshot {
  readonly at: string;
  readonly serverId: string;
  readonly brokerConnected: boolean;
  readonly workers: readonly WorkerView[];
  /** `null` when the broker could not be asked. */
  readonly queues: readonly QueueDepth[] | null;
  readonly series: readonly SeriesPoint[];
  readonly recent: readonly TaskSummary[];
  readonly failures: readonly TaskSummary[];
  /** Counts by task type and outcome (`submitted`, `accepted`, `succeeded`, `failed`…). */
  readonly byType: Record<string, Record<string, number>>;
  /** Tasks accepted, by client kind. */
  readonly acceptedByKind: Record<string, number>;
  /** Open client connections, by client kind. */
  readonly clientsByKind: Record<string, number>;
}

/** What the feed reads from the server. */
export interface DashboardSources {
  readonly serverId: string;
  readonly stats: ServerStats;
  readonly store: TaskStore;
  workers(): WorkerView[];
  clientsByKind(): Map<string, number>;
  brokerConnected(): boolean;
  /** Reads queue depths from the broker; rejects when it cannot. */
  readQueueDepths(): Promise<QueueDepth[]>;
}

const encoder = new TextEncoder();

function _summary(view: TaskView): TaskSummary {
  const {
    taskId,
    taskType,
    status,
    client,
    submittedAt,
    finishedAt,
    worker,
    durationMs,
    attempts,
  } = view;
  return {
    taskId,
    taskType,
    status,
    client,
    submittedAt,
    ...(finishedAt === undefined ? {} : { finishedAt }),
    ...(worker === undefined ? {} : { worker }),
    ...(durationMs === undefined ? {} : { durationMs }),
    ...(attempts === undefined ? {} : { attempts }),
    ...(view.error === undefined ? {} : { error: view.error }),
  };
}

function _total(counts: ReadonlyMap<string, number>): number {
  let n = 0;
  for (const v of counts.values()) n += v;
  return n;
}

/** The dashboard's sampler and event streams. */
export class DashboardFeed {
  readonly #sources: DashboardSources;
  readonly #series: SeriesPoint[] = [];
  readonly #subscribers = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #last = { succeeded: 0, failed: 0, latencySum: 0, latencyCount: 0 };
  #depths: { at: number; value: Promise<QueueDepth[] | null> } | undefined;
  #building = false;
  #closed = false;

  constructor(sources: DashboardSources) {
    this.#sources = sources;
  }

  /** Starts sampling once per second. */
  start(): void {
    this.#last = this.#counters();
    this.#timer = setInterval(() => this.#tick(), 1_000);
    Deno.unrefTimer(this.#timer);
  }

  /** Event streams open now. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** The per-second series, oldest first. */
  series(): readonly SeriesPoint[] {
    return this.#series;
  }

  /** Queue depths, read from the broker at most once per second; `null` when it cannot be asked. */
  queueDepths(): Promise<QueueDepth[] | null> {
    const now = Date.now();
    if (this.#depths === undefined || now - this.#depths.at >= DEPTHS_TTL_MS) {
      const value = this.#sources.readQueueDepths().catch(() => null);
      this.#depths = { at: now, value };
    }
    return this.#depths.value;
  }

  /**
   * A `text/event-stream` response: a `snapshot` event now and then every second, until the client goes
   * away or the feed closes (a `fin` event first). 503 past {@linkcode MAX_SUBSCRIBERS} or once closed.
   */
  subscribe(): Response {
    if (this.#closed || this.#subscribers.size >= MAX_SUBSCRIBERS) {
      return new Response(
        JSON.stringify({
          error: "no_disponible",
          message: "Demasiados paneles abiertos o servidor apagándose",
        }),
        { status: 503, headers: { "content-type": "application/json; charset=utf-8" } },
      );
    }
    let self: ReadableStreamDefaultController<Uint8Array> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = controller;
        this.#subscribers.add(controller);
        controller.enqueue(encoder.encode(": colmena\n\n"));
        this.snapshot().then((s) => this.#send(controller, s)).catch(() => {});
      },
      cancel: () => {
        if (self !== undefined) this.#subscribers.delete(self);
      },
    }, { highWaterMark: 2 });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  /** Builds a snapshot now. */
  async snapshot(): Promise<DashboardSnapshot> {
    const s = this.#sources;
    const [recent, failures, queues] = await Promise.all([
      s.store.list({ limit: RECENT_TASKS }).then((p) => p.items.map(_summary), () => []),
      s.store.list({ limit: RECENT_FAILURES, statuses: ["failed"] }).then(
        (p) => p.items.map(_summary),
        () => [],
      ),
      this.queueDepths(),
    ]);
    const byType: Record<string, Record<string, number>> = {};
    for (const [outcome, counts] of Object.entries(s.stats.tasks)) {
      for (const [type, n] of counts) (byType[type] ??= {})[outcome] = n;
    }
    return {
      at: new Date().toISOString(),
      serverId: s.serverId,
      brokerConnected: s.brokerConnected(),
      workers: s.workers(),
      queues,
      series: this.#series,
      recent,
      failures,
      byType,
      acceptedByKind: Object.fromEntries(s.stats.acceptedByKind),
      clientsByKind: Object.fromEntries(s.clientsByKind()),
    };
  }

  /** Ends every stream after a `fin` event, and stops sampling; later subscribers get 503. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    const fin = encoder.encode("event: fin\ndata: {}\n\n");
    for (const controller of this.#subscribers) {
      try {
        controller.enqueue(fin);
        controller.close();
      } catch {
        // the client already went away
      }
    }
    this.#subscribers.clear();
  }

  #counters() {
    const stats = this.#sources.stats;
    let latencySum = 0;
    let latencyCount = 0;
    for (const h of stats.latency.values()) {
      latencySum += h.sum;
      latencyCount += h.count;
    }
    return {
      succeeded: _total(stats.tasks.succeeded),
      failed: _total(stats.tasks.failed),
      latencySum,
      latencyCount,
    };
  }

  #tick(): void {
    const now = this.#counters();
    const count = now.latencyCount - this.#last.latencyCount;
    this.#series.push({
      t: Date.now(),
      succeeded: now.succeeded - this.#last.succeeded,
      failed: now.failed - this.#last.failed,
      latencyMs: count > 0 ? ((now.latencySum - this.#last.latencySum) / count) * 1000 : null,
    });
    if (this.#series.length > SERIES_SECONDS) this.#series.shift();
    this.#last = now;
    if (this.#subscribers.size > 0 && !this.#building) {
      // One snapshot at a time: a slow store makes the feed skip seconds rather than pile up queries.
      this.#building = true;
      this.snapshot().then((snapshot) => {
        const frame = _event(snapshot);
        for (const controller of this.#subscribers) this.#sendFrame(controller, frame);
      }).catch((err) => log.error("No se pudo preparar el estado del panel", err)).finally(() => {
        this.#building = false;
      });
    }
  }

  #send(controller: ReadableStreamDefaultController<Uint8Array>, s: DashboardSnapshot): void {
    this.#sendFrame(controller, _event(s));
  }

  #sendFrame(controller: ReadableStreamDefaultController<Uint8Array>, frame: Uint8Array): void {
    if (!this.#subscribers.has(controller)) return;
    // A client that has not taken the last snapshot skips this one: at most one waits per client.
    if ((controller.desiredSize ?? 0) <= 0) return;
    try {
      controller.enqueue(frame);
    } catch {
      this.#subscribers.delete(controller);
    }
  }
}

function _event(snapshot: DashboardSnapshot): Uint8Array {
  return encoder.encode(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`);
}
