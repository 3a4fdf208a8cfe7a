/**
 * The folder blob store: each object is one file under a root folder, its key the file's relative path.
 *
 * A put writes a temporary file beside the target, fsyncs it, renames it over the target and fsyncs the
 * folder, so a reader sees the old object or the new one, never a part, and a resolved put survives a crash.
 * Failures of the folder itself (permission denied, read-only or full file system, I/O error, the root gone
 * or replaced by a file) are `BLOB_UNAVAILABLE` with the cause attached; `NOT_FOUND` means only that the
 * root is there and the key is not. Also home to {@linkcode assertBlobKey}, the key rules every {@linkcode BlobStore} applies.
 *
 * @module
 */
import { dirname, join, resolve, sep } from "node:path";
import { ColmenaError } from "../errors.ts";
import type { BlobInfo, BlobStore } from "../ports.ts";

/** Longest key, in UTF-8 bytes (S3's limit). */
export const MAX_BLOB_KEY_BYTES = 1024;

/** Longest segment of a key, in UTF-8 bytes (a file name's limit on common file systems). */
const MAX_SEGMENT_BYTES = 255;

const encoder = new TextEncoder();

/**
 * Throws `TypeError` unless `key` is a valid blob key: 1 to {@linkcode MAX_BLOB_KEY_BYTES} UTF-8 bytes of
 * `/`-separated segments, each non-empty, at most 255 bytes, not starting with `.` (so no `.`, `..` or
 * hidden names), and with no control character (NUL included) or backslash anywhere; no leading `/`.
 * Colmena builds its keys (`tasks/<uuid>/payload`), so a bad key is a programmer error.
 */
export function assertBlobKey(key: string): void {
  if (typeof key !== "string" || key.length === 0) {
    throw new TypeError(
      `Cannot use blob key ${JSON.stringify(key)}: it must be a non-empty string`,
    );
  }
  if (encoder.encode(key).byteLength > MAX_BLOB_KEY_BYTES) {
    throw new TypeError(
      `Cannot use blob key "${key.slice(0, 40)}…": it exceeds ${MAX_BLOB_KEY_BYTES} bytes`,
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(key)) {
    throw new TypeError(
      `Cannot use blob key ${JSON.stringify(key)}: it contains a control character or a backslash`,
    );
  }
  for (const segment of key.split("/")) {
    if (segment.length === 0) {
      throw new TypeError(
        `Cannot use blob key ${JSON.stringify(key)}: it is absolute or has an empty segment`,
      );
    }
    if (segment.startsWith(".")) {
      throw new TypeError(
        `Cannot use blob key ${JSON.stringify(key)}: segment "${segment}" starts with "."`,
      );
    }
    if (encoder.encode(segment).byteLength > MAX_SEGMENT_BYTES) {
      throw new TypeError(
        `Cannot use blob key ${JSON.stringify(key)}: a segment exceeds ${MAX_SEGMENT_BYTES} bytes`,
      );
    }
  }
}

/** The Spanish `NOT_FOUND` of a blob key. */
export function blobNotFound(key: string, cause?: unknown): ColmenaError {
  return new ColmenaError("NOT_FOUND", {
    message: `No existe ningún objeto con la clave "${key}"`,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Bytes read per chunk by {@linkcode FolderBlobStore.stream}. */
const READ_CHUNK_BYTES = 64 * 1024;

/** Attempts of a put whose folder a concurrent delete removed under it. */
const PUT_ATTEMPTS = 5;

/**
 * A {@linkcode BlobStore} on a local folder: key `tasks/<uuid>/payload` is the file
 * `<root>/tasks/<uuid>/payload`. Unlike S3, a key cannot also be the "folder" of another key (`a` and `a/b`):
 * such a put throws `TypeError`. Deleting an object also removes the folders it leaves empty.
 */
export class FolderBlobStore implements BlobStore {
  readonly #root: string;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #streams = new Set<(reason: Error) => void>();
  #closed = false;

  /** Uses `root` as is; {@linkcode openFolderBlobStore} also creates it. */
  constructor(root: string) {
    this.#root = resolve(root);
  }

  /** The absolute root folder. */
  get root(): string {
    return this.#root;
  }

  /** Stores an object atomically and durably, streaming a `ReadableStream` to disk chunk by chunk. */
  put(key: string, data: Uint8Array | ReadableStream<Uint8Array>): Promise<void> {
    return this.#track(() => this.#put(key, data));
  }

  /** The object's bytes; rejects with `NOT_FOUND` when there is none. */
  get(key: string): Promise<Uint8Array> {
    return this.#track(async () => {
      try {
        return await Deno.readFile(this.#path(key));
      } catch (err) {
        throw await this.#translateRead(key, err);
      }
    });
  }

  /**
   * The object as a stream; rejects with `NOT_FOUND` when there is none. The file stays open until the stream
   * is read to its end or cancelled, or the store is closed (the stream then errors).
   */
  stream(key: string): Promise<ReadableStream<Uint8Array>> {
    return this.#track(async () => {
      const path = this.#path(key);
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path, { read: true });
      } catch (err) {
        throw await this.#translateRead(key, err);
      }
      try {
        if ((await file.stat()).isDirectory) throw blobNotFound(key);
      } catch (err) {
        file.close();
        throw await this.#translateRead(key, err);
      }
      return this.#readable(file);
    });
  }

  /** Deletes objects; missing keys (and keys that are only folders of others) are ignored. */
  delete(keys: readonly string[]): Promise<void> {
    return this.#track(async () => {
      const paths = keys.map((key) => this.#path(key));
      await Promise.all(paths.map((path) => this.#deleteOne(path)));
    });
  }

  /** Objects under `prefix`, walking their folders; files being written (`.…tmp`) are not objects yet. */
  async *list(prefix: string): AsyncIterable<BlobInfo> {
    if (this.#closed) throw new TypeError("Cannot use a closed blob store");
    // The deepest folder every key with this prefix lies in: "uploads/ab" → "uploads".
    const cut = prefix.lastIndexOf("/");
    const base = cut < 0 ? "" : prefix.slice(0, cut);
    const start = base === "" ? this.#root : this.#path(base);
    const folders = [start];
    while (folders.length > 0) {
      const folder = folders.pop()!;
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(folder));
      } catch (err) {
        // Gone (deleted while listing, or never created), or the base is an object, not a folder;
        // unless the root itself is what is missing.
        if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
          const broken = await this.#rootFailure(err);
          if (broken !== undefined) throw broken;
          continue;
        }
        throw unavailable(err);
      }
      for (const entry of entries) {
        if (entry.name.startsWith(".")) continue;
        const path = join(folder, entry.name);
        const key = path.slice(this.#root.length + 1).split(sep).join("/");
        if (entry.isDirectory) {
          if (key.startsWith(prefix) || prefix.startsWith(key + "/")) folders.push(path);
          continue;
        }
        if (!entry.isFile || !key.startsWith(prefix)) continue;
        let info: Deno.FileInfo;
        try {
          info = await Deno.stat(path);
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) continue;
          throw unavailable(err);
        }
        yield { key, modifiedAt: info.mtime ?? new Date(0) };
      }
    }
  }

  /** Waits for operations in progress, then errors the streams still open. Later calls reject. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    const reason = new Error("Blob store closed while a stream was open");
    for (const abort of [...this.#streams]) abort(reason);
  }

  #track<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new TypeError("Cannot use a closed blob store"));
    const promise = operation();
    this.#pending.add(promise);
    const forget = () => this.#pending.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  #path(key: string): string {
    assertBlobKey(key);
    const path = join(this.#root, ...key.split("/"));
    if (!path.startsWith(this.#root + sep)) {
      throw new TypeError(`Cannot use blob key ${JSON.stringify(key)}: it leaves the root folder`);
    }
    return path;
  }

  async #put(key: string, data: Uint8Array | ReadableStream<Uint8Array>): Promise<void> {
    let temp: string | undefined;
    let file: Deno.FsFile | undefined;
    try {
      const path = this.#path(key);
      const folder = dirname(path);
      temp = join(folder, `.${crypto.randomUUID()}.tmp`);
      file = await this.#openTemp(key, folder, temp);
      if (data instanceof Uint8Array) await writeAll(file, data);
      else await writeStream(file, data);
      await file.sync();
      file.close();
      file = undefined;
      try {
        await Deno.rename(temp, path);
      } catch (err) {
        if (err instanceof Deno.errors.IsADirectory || isErrno(err, "ENOTEMPTY")) {
          throw keyConflict(key, err);
        }
        throw err;
      }
      temp = undefined;
      await syncFolder(folder);
      // A put usually creates its folder too (`tasks/<uuid>/`): make that entry durable as well.
      if (folder !== this.#root) await syncFolder(dirname(folder));
    } catch (err) {
      file?.close();
      if (temp !== undefined) await Deno.remove(temp).catch(() => {});
      if (err instanceof SourceError) throw err.cause;
      if (data instanceof ReadableStream && !data.locked) await data.cancel(err).catch(() => {});
      throw unavailable(err);
    }
  }

  async #openTemp(key: string, folder: string, temp: string): Promise<Deno.FsFile> {
    for (let attempt = 1;; attempt++) {
      try {
        await Deno.mkdir(folder, { recursive: true });
        return await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
      } catch (err) {
        if (err instanceof Deno.errors.NotADirectory || err instanceof Deno.errors.AlreadyExists) {
          // A path segment is a file: the root (the store is broken) or an object under it (a key clash).
          throw await this.#rootFailure(err) ?? keyConflict(key, err);
        }
        // A concurrent delete pruned the folder between mkdir and open.
        if (err instanceof Deno.errors.NotFound && attempt < PUT_ATTEMPTS) continue;
        throw err;
      }
    }
  }

  /**
   * A read that found no file is `NOT_FOUND` only when the root folder is there: a missing key, a key that
   * is only a folder of others, or one that runs through another object. Anything else is `BLOB_UNAVAILABLE`.
   */
  async #translateRead(key: string, err: unknown): Promise<unknown> {
    if (
      err instanceof Deno.errors.NotFound || err instanceof Deno.errors.IsADirectory ||
      err instanceof Deno.errors.NotADirectory
    ) {
      return await this.#rootFailure(err) ?? blobNotFound(key, err);
    }
    return unavailable(err);
  }

  /** `BLOB_UNAVAILABLE` (with `cause`) unless the root is still a folder that can be reached. */
  async #rootFailure(cause: unknown): Promise<ColmenaError | undefined> {
    try {
      if ((await Deno.stat(this.#root)).isDirectory) return undefined;
    } catch {
      // Gone, or its path cannot be walked: the store is broken all the same.
    }
    return new ColmenaError("BLOB_UNAVAILABLE", {
      message: "La carpeta del almacén de objetos no está disponible; inténtelo de nuevo",
      cause,
    });
  }

  async #deleteOne(path: string): Promise<void> {
    try {
      await Deno.remove(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return;
      // A folder of other keys, not an object.
      if (isErrno(err, "ENOTEMPTY") || err instanceof Deno.errors.IsADirectory) return;
      throw unavailable(err);
    }
    await this.#pruneFolders(dirname(path));
  }

  /** Removes the folders a delete left empty, up to the root; a concurrent put recreates what it needs. */
  async #pruneFolders(folder: string): Promise<void> {
    while (folder.startsWith(this.#root + sep)) {
      try {
        await Deno.remove(folder);
      } catch {
        return;
      }
      folder = dirname(folder);
    }
  }

  #readable(file: Deno.FsFile): ReadableStream<Uint8Array> {
    let open = true;
    const release = () => {
      if (!open) return;
      open = false;
      this.#streams.delete(abort);
      file.close();
    };
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const abort = (reason: Error) => {
      if (!open) return;
      release();
      controller.error(reason);
    };
    this.#streams.add(abort);
    return new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
      async pull(c) {
        if (!open) return;
        const buffer = new Uint8Array(READ_CHUNK_BYTES);
        let read: number | null;
        try {
          read = await file.read(buffer);
        } catch (err) {
          if (!open) return;
          release();
          throw unavailable(err);
        }
        if (!open) return;
        if (read === null) {
          release();
          c.close();
        } else {
          c.enqueue(buffer.subarray(0, read));
        }
      },
      cancel() {
        release();
      },
    }, { highWaterMark: 0 });
  }
}

/** Creates the root folder if needed and opens a {@linkcode FolderBlobStore} on it. */
export async function openFolderBlobStore(path: string): Promise<FolderBlobStore> {
  await Deno.mkdir(path, { recursive: true });
  return new FolderBlobStore(path);
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.byteLength) offset += await file.write(data.subarray(offset));
}

/** Wraps an error of the caller's stream, which a put rethrows as it came. */
class SourceError extends Error {
  override readonly cause: unknown;
  constructor(cause: unknown) {
    super("The source stream failed", { cause });
    this.cause = cause;
  }
}

async function writeStream(file: Deno.FsFile, stream: ReadableStream<Uint8Array>): Promise<void> {
  const reader = stream.getReader();
  try {
    while (true) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (err) {
        throw new SourceError(err);
      }
      const { done, value } = next;
      if (done) return;
      try {
        await writeAll(file, value);
      } catch (err) {
        await reader.cancel(err).catch(() => {});
        throw err;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

async function syncFolder(folder: string): Promise<void> {
  let handle: Deno.FsFile;
  try {
    handle = await Deno.open(folder, { read: true });
  } catch (err) {
    // A concurrent delete of the same key already removed it, and the folder with it.
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

/** Keeps colmena's own and programmer errors; any other file-system failure becomes `BLOB_UNAVAILABLE`. */
function unavailable(err: unknown): unknown {
  if (err instanceof ColmenaError || err instanceof TypeError || err instanceof RangeError) {
    return err;
  }
  return new ColmenaError("BLOB_UNAVAILABLE", { cause: err });
}

function keyConflict(key: string, cause: unknown): TypeError {
  return new TypeError(
    `Cannot store blob key ${JSON.stringify(key)}: it clashes with another key used as its folder`,
    { cause },
  );
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && "code" in err && err.code === code;
}
