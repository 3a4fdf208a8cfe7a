/**
 * Makes a SQLite WAL file durable without blocking the event loop: an `fdatasync` of the `-wal` file runs on
 * Deno's blocking pool while the loop goes on.
 *
 * The SQLite store's small batches, applied on the calling thread while the store is quiet, commit with
 * `synchronous=NORMAL` (no fsync inside COMMIT: their frames are in the file, in the page cache) and are
 * answered only after a sync of this file has run **from start to end after their COMMIT**. A WAL is one
 * append-ordered file, so one `fdatasync` makes every frame written before it durable, whichever connection
 * wrote it; a checkpoint in NORMAL mode syncs the WAL before it copies frames into the database file.
 * Requests that come while a sync runs share the next one (group commit). A deferred request starts no sync
 * of its own for a while: the next sync anyone starts serves it (the store defers the writes no client waits
 * for, such as results, whose broker ack alone waits, so that the next task's record does not queue behind
 * their fsync).
 *
 * @module
 */

/** Syncs one `-wal` file on request; see the module's description. */
export class WalSync {
  readonly #path: string;
  #file: Deno.FsFile | undefined;
  /** The sync running now, if any. */
  #running: Promise<void> | undefined;
  /** The sync that starts once the running one ends, shared by every request made meanwhile. */
  #next: Promise<void> | undefined;
  /** Deferred requests that no sync has started for yet. */
  #deferred: PromiseWithResolvers<void>[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** `path` is the database file's; its WAL is `path` + `-wal`. */
  constructor(path: string) {
    this.#path = `${path}-wal`;
  }

  /**
   * Resolves once an `fdatasync` of the WAL that started after this call has ended, so everything committed
   * before the call is on disk; rejects when the sync fails (the frames' durability is then unknown).
   */
  request(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("The WAL sync is closed"));
    if (this.#running === undefined) return this.#start();
    // The running sync may have started before the caller's COMMIT: the caller needs the next one.
    this.#next ??= this.#running.then(() => {}, () => {}).then(() => {
      this.#next = undefined;
      return this.#start();
    });
    return this.#next;
  }

  /**
   * As {@linkcode request}, but no sync is started for it before `delayMs` have passed: one started
   * meanwhile for anyone serves it.
   */
  deferred(delayMs: number): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("The WAL sync is closed"));
    const waiter = Promise.withResolvers<void>();
    this.#deferred.push(waiter);
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.request().catch(() => {});
    }, delayMs);
    return waiter.promise;
  }

  /** Waits for the syncs requested so far (deferred ones too), then closes the file; later requests reject. */
  async close(): Promise<void> {
    const deferred = this.#deferred.length > 0 ? this.request() : undefined;
    this.#closed = true;
    await Promise.allSettled([this.#running, this.#next, deferred]);
    this.#file?.close();
    this.#file = undefined;
  }

  #start(): Promise<void> {
    // The deferred requests made so far were made before this sync starts: it serves them.
    const waiters = this.#deferred;
    this.#deferred = [];
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const running = this.#sync().finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    running.then(
      () => waiters.forEach((waiter) => waiter.resolve()),
      (err: unknown) => waiters.forEach((waiter) => waiter.reject(err)),
    );
    return running;
  }

  async #sync(): Promise<void> {
    try {
      this.#file ??= await Deno.open(this.#path, { read: true, write: true });
      await this.#file.syncData();
    } catch (err) {
      // A file that failed is opened again on the next request.
      try {
        this.#file?.close();
      } catch {
        // already closed
      }
      this.#file = undefined;
      throw err;
    }
  }
}
