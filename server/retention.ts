/**
 * Retention: deletes finished task records older than the configured days, with their objects, and the
 * uploaded files no record reads, on a schedule.
 *
 * @module
 */
import * as log from "../shared/log.ts";
import type { BlobStore, TaskStore } from "../shared/ports.ts";
import { UPLOADS_PREFIX } from "../shared/blob_keys.ts";

/** What one {@linkcode pruneOnce} deleted. */
export interface Pruned {
  /** Finished records older than the retention. */
  readonly tasks: number;
  /** Their objects: payloads, outputs, and the uploaded files no other record reads. */
  readonly objects: number;
  /** Uploaded files older than the retention that no record reads (never submitted, or already pruned). */
  readonly unusedUploads: number;
}

/**
 * Deletes finished records older than the retention, then their objects, then the uploads older than the
 * retention that no record reads; returns how many of each. The records go first: objects of a record whose
 * deletion failed would be lost to a task still on record.
 */
export async function pruneOnce(
  store: TaskStore,
  blobs: BlobStore,
  retentionMs: number,
): Promise<Pruned> {
  const cutoff = Date.now() - retentionMs;
  const before = new Date(cutoff).toISOString();
  let tasks = 0;
  let objects = 0;
  for (let round = 0; round < 1_000; round++) {
    const { removed, blobKeys } = await store.prune(before, 1_000);
    if (blobKeys.length > 0) await blobs.delete(blobKeys);
    tasks += removed;
    objects += blobKeys.length;
    if (removed < 1_000) break;
  }
  let unusedUploads = 0;
  const sweep = async (keys: string[]) => {
    const inUse = await store.filesInUse(keys);
    const unused = keys.filter((key) => !inUse.has(key));
    if (unused.length > 0) await blobs.delete(unused);
    unusedUploads += unused.length;
  };
  let old: string[] = [];
  for await (const { key, modifiedAt } of blobs.list(UPLOADS_PREFIX)) {
    if (modifiedAt.getTime() >= cutoff) continue;
    old.push(key);
    if (old.length === 1_000) {
      await sweep(old);
      old = [];
    }
  }
  if (old.length > 0) await sweep(old);
  return { tasks, objects, unusedUploads };
}

/** When and how much {@linkcode schedulePruning} deletes. */
export interface PruneSchedule {
  /** Finished records older than this many days are deleted, with their objects. */
  readonly retentionDays: number;
  /** Time between two looks, after the first one at once. @defaultValue `3600000` (an hour) */
  readonly intervalMs?: number;
}

/** Prunes now and then every `intervalMs` (an hour by default); returns a function that stops it. */
export function schedulePruning(
  store: TaskStore,
  blobs: BlobStore,
  schedule: PruneSchedule,
): () => void {
  const { retentionDays } = schedule;
  const retentionMs = retentionDays * 24 * 3_600_000;
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try {
      const { tasks, objects, unusedUploads } = await pruneOnce(store, blobs, retentionMs);
      if (tasks > 0) {
        log.info(
          `Retención: ${tasks} tareas terminadas hace más de ${retentionDays} días borradas, ` +
            `con ${objects} objetos`,
        );
      }
      if (unusedUploads > 0) {
        log.info(
          `Retención: ${unusedUploads} ficheros subidos hace más de ${retentionDays} días ` +
            "que ninguna tarea lee, borrados",
        );
      }
    } catch (err) {
      log.error("No se pudieron borrar las tareas antiguas", err);
    } finally {
      running = false;
    }
  };
  run();
  const timer = setInterval(run, schedule.intervalMs ?? 3_600_000);
  return () => clearInterval(timer);
}
