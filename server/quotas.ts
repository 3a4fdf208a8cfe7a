/**
 * Quotas per principal: what one `cliente` principal may ask of this server. `admin` principals are exempt
 * (and, without tokens, every connection is `admin`, so a loopback server behaves as before quotas).
 *
 * - Tasks in flight: tasks this server accepted for the principal whose result it has not seen yet. The count
 *   is in memory, per server process: a principal that spreads its tasks over N servers may hold N times it,
 *   and a restart forgets it. An entry also expires once its task cannot be running any more (attempts ×
 *   (timeout + the longest retry wait)), so a result lost on the way never locks a principal out.
 * - Submits per second: a token bucket (twice the rate may be saved up).
 * - Highest priority, and attempts × timeout of one task.
 * - Uploads started and bytes uploaded per hour (a fixed window).
 *
 * Rate-type breaches (in flight, per second, per hour) answer `QUOTA_EXCEEDED`, which is retryable; a request
 * that asks for more than its principal may ever ask answers `QUOTA_LIMIT`, which is not.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import type { Principal } from "./principal.ts";

/** The quotas of each `cliente` principal, from the server's configuration. */
export interface QuotaLimits {
  /** Tasks accepted and not yet finished. */
  readonly quotaInFlight: number;
  /** Submits per second. */
  readonly quotaSubmitRate: number;
  /** Highest priority (0–9). */
  readonly quotaMaxPriority: number;
  /** Most attempts × timeout of one task, in milliseconds. */
  readonly quotaBudgetMs: number;
  /** Uploads started per hour. */
  readonly quotaUploads: number;
  /** Bytes uploaded per hour. */
  readonly quotaUploadBytes: number;
}

/** What a submit asks for, as the quotas weigh it. */
export interface SubmitAsk {
  readonly priority: number;
  readonly maxAttempts: number;
  readonly timeoutMs: number;
}

/** A place among a principal's tasks in flight, held from the quota check until the task is settled. */
export interface InFlightSlot {
  /** The task was recorded under `taskId`: it counts until its result or cancellation is seen. */
  track(taskId: string, ask: Pick<SubmitAsk, "maxAttempts" | "timeoutMs">): void;
  /** Gives the place back (no task was created, or it was withdrawn). */
  release(): void;
}

/** The longest wait between two attempts (the worker's retry backoff is capped there). */
const MAX_RETRY_WAIT_MS = 300_000;
const HOUR_MS = 3_600_000;

const NO_SLOT: InFlightSlot = { track() {}, release() {} };

interface Usage {
  /** Expiry (epoch ms) of each task in flight, by task id or by a pending slot's key. */
  readonly inFlight: Map<string, number>;
  tokens: number;
  tokensAt: number;
  windowStart: number;
  uploads: number;
  uploadBytes: number;
}

/** The quota book of one server: usage per principal name. */
export class PrincipalQuotas {
  readonly #limits: QuotaLimits;
  readonly #now: () => number;
  readonly #usage = new Map<string, Usage>();
  /** Which principal each tracked task belongs to. */
  readonly #owners = new Map<string, string>();

  constructor(limits: QuotaLimits, options: { now?: () => number } = {}) {
    this.#limits = limits;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Admits one submit of `principal`, or throws `QUOTA_LIMIT` (priority, budget) or `QUOTA_EXCEEDED`
   * (submits per second, tasks in flight). The slot it returns must be tracked or released.
   */
  admitSubmit(principal: Principal, ask: SubmitAsk): InFlightSlot {
    if (principal.role === "admin") return NO_SLOT;
    const l = this.#limits;
    if (ask.priority > l.quotaMaxPriority) {
      throw new ColmenaError("QUOTA_LIMIT", {
        message: `Cuota de prioridad: como mucho ${l.quotaMaxPriority} (se pidió ${ask.priority})`,
      });
    }
    const budget = ask.maxAttempts * ask.timeoutMs;
    if (budget > l.quotaBudgetMs) {
      throw new ColmenaError("QUOTA_LIMIT", {
        message:
          `Cuota de intentos × timeout: como mucho ${l.quotaBudgetMs} ms por tarea (se pidieron ${ask.maxAttempts} × ${ask.timeoutMs} ms)`,
      });
    }
    const usage = this.#usageOf(principal.name);
    const now = this.#now();
    this.#expire(usage, now);
    if (usage.inFlight.size >= l.quotaInFlight) {
      throw new ColmenaError("QUOTA_EXCEEDED", {
        message:
          `Cuota de tareas en curso: ${l.quotaInFlight} sin terminar; espere a que terminen algunas`,
      });
    }
    const burst = 2 * l.quotaSubmitRate;
    usage.tokens = Math.min(
      burst,
      usage.tokens + ((now - usage.tokensAt) * l.quotaSubmitRate) / 1000,
    );
    usage.tokensAt = now;
    if (usage.tokens < 1) {
      throw new ColmenaError("QUOTA_EXCEEDED", {
        message: `Cuota de envíos: como mucho ${l.quotaSubmitRate} por segundo; espere un poco`,
      });
    }
    usage.tokens -= 1;
    const key = `slot:${crypto.randomUUID()}`;
    // A slot not yet settled counts, so that concurrent submits cannot all pass the check.
    usage.inFlight.set(key, now + HOUR_MS);
    return {
      track: (taskId, { maxAttempts, timeoutMs }) => {
        if (!usage.inFlight.delete(key)) return;
        usage.inFlight.set(
          taskId,
          this.#now() + maxAttempts * (timeoutMs + MAX_RETRY_WAIT_MS) + 60_000,
        );
        this.#owners.set(taskId, principal.name);
      },
      release: () => {
        usage.inFlight.delete(key);
      },
    };
  }

  /** A task finished (its result was seen) or was cancelled: it no longer counts. */
  finished(taskId: string): void {
    const name = this.#owners.get(taskId);
    if (name === undefined) return;
    this.#owners.delete(taskId);
    this.#usage.get(name)?.inFlight.delete(taskId);
  }

  /** Tasks of `name` counted in flight now. */
  inFlight(name: string): number {
    const usage = this.#usage.get(name);
    if (usage === undefined) return 0;
    this.#expire(usage, this.#now());
    return usage.inFlight.size;
  }

  /** Admits the start of an upload of `principal`, or throws `QUOTA_EXCEEDED` (uploads per hour). */
  admitUpload(principal: Principal): void {
    if (principal.role === "admin") return;
    const usage = this.#window(principal.name);
    if (usage.uploads >= this.#limits.quotaUploads) {
      throw new ColmenaError("QUOTA_EXCEEDED", {
        message: `Cuota de subidas: como mucho ${this.#limits.quotaUploads} por hora`,
      });
    }
    usage.uploads++;
  }

  /** Counts `bytes` uploaded by `principal`, or throws `QUOTA_EXCEEDED` (bytes per hour). */
  addUploadBytes(principal: Principal, bytes: number): void {
    if (principal.role === "admin") return;
    const usage = this.#window(principal.name);
    usage.uploadBytes += bytes;
    if (usage.uploadBytes > this.#limits.quotaUploadBytes) {
      throw new ColmenaError("QUOTA_EXCEEDED", {
        message: `Cuota de bytes subidos: como mucho ${this.#limits.quotaUploadBytes} por hora`,
      });
    }
  }

  #usageOf(name: string): Usage {
    let usage = this.#usage.get(name);
    if (usage === undefined) {
      usage = {
        inFlight: new Map(),
        tokens: 2 * this.#limits.quotaSubmitRate,
        tokensAt: this.#now(),
        windowStart: this.#now(),
        uploads: 0,
        uploadBytes: 0,
      };
      this.#usage.set(name, usage);
    }
    return usage;
  }

  #window(name: string): Usage {
    const usage = this.#usageOf(name);
    const now = this.#now();
    if (now - usage.windowStart >= HOUR_MS) {
      usage.windowStart = now;
      usage.uploads = 0;
      usage.uploadBytes = 0;
    }
    return usage;
  }

  #expire(usage: Usage, now: number): void {
    for (const [key, expiresAt] of usage.inFlight) {
      if (expiresAt <= now) {
        usage.inFlight.delete(key);
        this.#owners.delete(key);
      }
    }
  }
}
