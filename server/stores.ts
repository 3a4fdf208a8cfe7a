/**
 * Chooses the task store from the server's configuration, and prunes old records on a schedule.
 *
 * @module
 */
import type { ServerConfig } from "../shared/config.ts";
import * as log from "../shared/log.ts";
import type { BlobStore, TaskStore } from "../shared/ports.ts";
import { openPostgresTaskStore } from "../shared/adapters/postgres.ts";
import { openSqliteTaskStore } from "../shared/adapters/sqlite.ts";
import { MemoryTaskStore } from "./memory_store.ts";

/** Which store the configuration picks: PostgreSQL with a URL, else SQLite, unless `store` says. */
export function storeKind(config: ServerConfig): "sqlite" | "postgres" | "memory" {
  return config.store ?? (config.databaseUrl === undefined ? "sqlite" : "postgres");
}

/** A short Spanish description of where records go, for the start-up log. */
export function describeStore(config: ServerConfig): string {
  switch (storeKind(config)) {
    case "postgres":
      return `PostgreSQL ${(config.databaseUrl ?? "").replace(/\/\/[^@/]*@/, "//")}`;
    case "memory":
      return "memoria (se pierde al parar)";
    default:
      return `SQLite ${config.dataDir}/colmena.db`;
  }
}

/** Opens the task store the configuration names; PostgreSQL migrations run here. */
export async function openTaskStore(config: ServerConfig): Promise<TaskStore> {
  switch (storeKind(config)) {
    case "postgres": {
      if (config.databaseUrl === undefined) {
        throw new TypeError("Cannot open the PostgreSQL store: DATABASE_URL is not set");
      }
      return await openPostgresTaskStore(config.databaseUrl);
    }
    case "memory":
      return new MemoryTaskStore(config.memoryMaxTasks);
    default:
      return await openSqliteTaskStore(`${config.dataDir}/colmena.db`);
  }
}

/** Deletes finished records older than the retention, with their objects; returns how many. */
export async function pruneOnce(
  store: TaskStore,
  blobs: BlobStore,
  retentionMs: number,
): Promise<number> {
  const before = new Date(Date.now() - retentionMs).toISOString();
  let total = 0;
  for (let round = 0; round < 1_000; round++) {
    const { removed, blobKeys } = await store.prune(before, 1_000);
    if (blobKeys.length > 0) await blobs.delete(blobKeys);
    total += removed;
    if (removed < 1_000) break;
  }
  return total;
}

/** Prunes now and then every hour; returns a function that stops it. */
export function schedulePruning(
  store: TaskStore,
  blobs: BlobStore,
  retentionDays: number,
): () => void {
  const retentionMs = retentionDays * 24 * 3_600_000;
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try {
      const removed = await pruneOnce(store, blobs, retentionMs);
      if (removed > 0) {
        log.info(
          `Retención: ${removed} tareas terminadas hace más de ${retentionDays} días borradas`,
        );
      }
    } catch (err) {
      log.error("No se pudieron borrar las tareas antiguas", err);
    } finally {
      running = false;
    }
  };
  run();
  const timer = setInterval(run, 3_600_000);
  return () => clearInterval(timer);
}
