/**
 * The S3 blob store: the only file that imports the AWS SDK (`@aws-sdk/client-s3`, `@aws-sdk/lib-storage`).
 *
 * It talks to AWS S3 or any S3-compatible server (MinIO, Ceph, s3rver…), takes every setting from its
 * caller and never reads the environment or `~/.aws`, creates its bucket when missing, and translates SDK
 * failures at this boundary: a missing object is `NOT_FOUND`; a network failure, a 5xx or throttling is
 * `BLOB_UNAVAILABLE`; anything else (bad credentials, a missing bucket) is `INTERNAL`. The SDK's error
 * stays as `cause`.
 *
 * @module
 */
import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { ColmenaError } from "../errors.ts";
import type { BlobInfo, BlobStore } from "../ports.ts";
import { assertBlobKey, blobNotFound } from "./fs_blob.ts";

/** Static credentials for S3 (from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** Only for temporary credentials. */
  sessionToken?: string;
}

/** Options of {@linkcode openS3BlobStore}. */
export interface S3BlobStoreOptions {
  /** The bucket (`S3_BUCKET`); created when missing. */
  bucket: string;
  /**
   * Credentials, passed explicitly: the SDK's default chain (environment, `~/.aws`, instance metadata) is
   * never used.
   */
  credentials: S3Credentials;
  /** The URL of an S3-compatible server (`S3_ENDPOINT`); AWS's own endpoint when absent. */
  endpoint?: string;
  /** The region. @defaultValue `"us-east-1"` */
  region?: string;
  /**
   * Addresses buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`, as most S3-compatible
   * servers need. @defaultValue `true` with an `endpoint`, else `false`
   */
  forcePathStyle?: boolean;
  /**
   * Prepended to every key, so several users of one bucket stay apart (`"colmena"` stores `tasks/x` as
   * `colmena/tasks/x`); it follows the key rules, and a final `/` is added if missing. @defaultValue `""`
   */
  prefix?: string;
  /**
   * Bytes per part of a multipart upload, at least 5 MiB; a put holds up to `partSize × queueSize` bytes in
   * memory. @defaultValue `5 MiB`
   */
  partSize?: number;
  /** Parts of one upload sent at once. @defaultValue `2` */
  queueSize?: number;
  /**
   * Attempts per request, the first included, before a transient failure becomes `BLOB_UNAVAILABLE`.
   * @defaultValue `3`
   */
  maxAttempts?: number;
  /**
   * Longest wait for S3's answer to one request (its headers), retries included, in milliseconds; then it
   * is aborted as `BLOB_UNAVAILABLE`. @defaultValue `30_000`
   */
  requestTimeoutMs?: number;
  /**
   * Longest time an upload or a download may go without progress while it waits on S3, in milliseconds;
   * then it is aborted as `BLOB_UNAVAILABLE`. Time spent waiting on the caller (its source stream, or
   * its reading of `stream()`) does not count. @defaultValue `120_000`
   */
  idleTimeoutMs?: number;
  /** Whether to create the bucket when it is missing. @defaultValue `true` */
  createBucket?: boolean;
}

const MIB = 1024 * 1024;

/** Smallest part S3 accepts, but for the last one. */
export const MIN_PART_SIZE = 5 * MIB;

/**
 * A {@linkcode BlobStore} on an S3 bucket. Puts go through the SDK's multipart `Upload`: up to one part in a
 * single `PutObject`, larger data (a stream of unknown length included) in parts, so memory stays bounded.
 * S3 itself makes a completed put durable and atomic. Build it with {@linkcode openS3BlobStore}.
 */
export class S3BlobStore implements BlobStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #partSize: number;
  readonly #queueSize: number;
  readonly #requestTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #pending = new Set<Promise<unknown>>();
  #closed = false;

  /** Builds the client; it connects on the first request. Prefer {@linkcode openS3BlobStore}. */
  constructor(options: S3BlobStoreOptions) {
    const prefix = normalizePrefix(options.prefix ?? "");
    const partSize = options.partSize ?? MIN_PART_SIZE;
    if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE) {
      throw new RangeError(
        `Cannot use S3 part size ${partSize}: it must be at least ${MIN_PART_SIZE}`,
      );
    }
    const queueSize = options.queueSize ?? 2;
    if (!Number.isInteger(queueSize) || queueSize < 1) {
      throw new RangeError(`Cannot use S3 queue size ${queueSize}: it must be a positive integer`);
    }
    const { credentials, endpoint } = options;
    this.#bucket = options.bucket;
    this.#prefix = prefix;
    this.#partSize = partSize;
    this.#queueSize = queueSize;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
    // Every setting the SDK would otherwise look up in the environment or ~/.aws is given here. Its socket
    // timeouts are not set: under Deno's node:http they never fire, so requests are aborted by timers here.
    this.#client = new S3Client({
      region: options.region ?? "us-east-1",
      ...(endpoint === undefined ? {} : { endpoint }),
      forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
      credentials: {
        accessKeyId: credentials.accessKeyId,
        secretAccessKey: credentials.secretAccessKey,
        ...(credentials.sessionToken === undefined
          ? {}
          : { sessionToken: credentials.sessionToken }),
      },
      maxAttempts: options.maxAttempts ?? 3,
      retryMode: "standard",
      useFipsEndpoint: false,
      useDualstackEndpoint: false,
      useArnRegion: false,
      disableMultiregionAccessPoints: true,
      disableS3ExpressSessionAuth: true,
      followRegionRedirects: false,
      defaultsMode: "standard",
      authSchemePreference: [],
      sigv4aSigningRegionSet: [],
      disableClockSkewCorrection: false,
      // S3-compatible servers often lack the newer CRC checksums; send them only where S3 requires one.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      userAgentAppId: "colmena",
      // The SDK's default user agent asks the OS for its release (a `--allow-sys` permission).
      defaultUserAgentProvider: () => Promise.resolve([["colmena"], ["lang/js"]]),
    });
  }

  /** The bucket. */
  get bucket(): string {
    return this.#bucket;
  }

  /** The key prefix, `""` or ending in `/`. */
  get prefix(): string {
    return this.#prefix;
  }

  /** Creates the bucket unless it exists; idempotent, and safe when another process creates it at once. */
  ensureBucket(): Promise<void> {
    return this.#track(async () => {
      if (await this.#bucketExists()) return;
      try {
        await this.#timed((abortSignal) =>
          this.#client.send(new CreateBucketCommand({ Bucket: this.#bucket }), { abortSignal })
        );
      } catch (err) {
        const name = errorName(err);
        // Someone (maybe this very account) created it meanwhile; it is usable if we can reach it.
        if (name === "BucketAlreadyOwnedByYou") return;
        if (name === "BucketAlreadyExists" && await this.#bucketExists()) return;
        throw translate(err);
      }
    });
  }

  /** Stores an object, replacing any; resolves once S3 has it. A failed multipart upload is aborted. */
  put(key: string, data: Uint8Array | ReadableStream<Uint8Array>): Promise<void> {
    return this.#track(async () => {
      let objectKey: string;
      try {
        objectKey = this.#key(key);
      } catch (err) {
        if (data instanceof ReadableStream) await data.cancel(err).catch(() => {});
        throw err;
      }
      const abortController = new AbortController();
      const watchdog = new Watchdog(this.#idleTimeoutMs, () => abortController.abort());
      const source = data instanceof Uint8Array ? undefined : trackSource(data, watchdog);
      try {
        const upload = new Upload({
          client: this.#client,
          params: { Bucket: this.#bucket, Key: objectKey, Body: source?.stream ?? data },
          partSize: this.#partSize,
          queueSize: this.#queueSize,
          leavePartsOnError: false,
          abortController,
        });
        upload.on("httpUploadProgress", () => watchdog.kick());
        await upload.done();
      } catch (err) {
        // The caller's own stream failed: that is its error, not the store's.
        if (source?.failure !== undefined) throw source.failure.error;
        await source?.cancel(err);
        throw watchdog.fired ? idle(this.#idleTimeoutMs, err) : translate(err, key);
      } finally {
        watchdog.stop();
      }
    });
  }

  /** The object's bytes; rejects with `NOT_FOUND` when there is none. */
  get(key: string): Promise<Uint8Array> {
    return this.#track(async () => {
      const { body, length } = await this.#download(key);
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const chunk of body) {
        chunks.push(chunk);
        size += chunk.byteLength;
      }
      if (chunks.length === 1 && size === length) return chunks[0]!;
      const bytes = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, offset);
        offset += chunk.byteLength;
      }
      return bytes;
    });
  }

  /**
   * The object as a stream; rejects with `NOT_FOUND` when there is none. Cancel the stream to stop the
   * download; a failure or a stall part way errors it with `BLOB_UNAVAILABLE`.
   */
  stream(key: string): Promise<ReadableStream<Uint8Array>> {
    return this.#track(async () => (await this.#download(key)).body);
  }

  /** Deletes objects, 1000 per request; keys that do not exist are ignored. */
  delete(keys: readonly string[]): Promise<void> {
    return this.#track(async () => {
      const objectKeys = keys.map((key) => this.#key(key));
      for (let i = 0; i < objectKeys.length; i += 1000) {
        const batch = objectKeys.slice(i, i + 1000);
        let output;
        try {
          output = await this.#timed((abortSignal) =>
            this.#client.send(
              new DeleteObjectsCommand({
                Bucket: this.#bucket,
                Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
              }),
              { abortSignal },
            )
          );
        } catch (err) {
          throw translate(err);
        }
        const failed = (output.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
        if (failed.length > 0) {
          const first = failed[0]!;
          const cause = new Error(
            `Cannot delete ${failed.length} S3 object(s); first "${first.Key}": ${first.Code} ${first.Message}`,
          );
          throw isTransientCode(first.Code)
            ? new ColmenaError("BLOB_UNAVAILABLE", { cause })
            : new ColmenaError("INTERNAL", { cause });
        }
      }
    });
  }

  /** Objects under `prefix` (within the store's own prefix), a page of up to 1000 per request. */
  async *list(prefix: string): AsyncIterable<BlobInfo> {
    if (this.#closed) throw new TypeError("Cannot use a closed blob store");
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.#timed((abortSignal) =>
          this.#client.send(
            new ListObjectsV2Command({
              Bucket: this.#bucket,
              Prefix: this.#prefix + prefix,
              ...(token === undefined ? {} : { ContinuationToken: token }),
            }),
            { abortSignal },
          )
        );
      } catch (err) {
        throw translate(err);
      }
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield {
          key: object.Key.slice(this.#prefix.length),
          modifiedAt: object.LastModified ?? new Date(0),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /**
   * Waits for requests in progress, then closes the client's connections (streams still being read then
   * error). Later calls reject.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    this.#client.destroy();
  }

  #track<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new TypeError("Cannot use a closed blob store"));
    const promise = operation();
    this.#pending.add(promise);
    const forget = () => this.#pending.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  #key(key: string): string {
    assertBlobKey(key);
    return this.#prefix + key;
  }

  /** Runs one request, aborted after `requestTimeoutMs`. */
  async #timed<T>(request: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#requestTimeoutMs);
    try {
      return await request(controller.signal);
    } catch (err) {
      throw controller.signal.aborted ? timedOut(this.#requestTimeoutMs, err) : err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Starts a download: its body re-wrapped so that failures reach the reader as `BLOB_UNAVAILABLE`, and
   * aborted when S3 sends nothing for `idleTimeoutMs` while the reader waits.
   */
  async #download(key: string): Promise<{ body: ReadableStream<Uint8Array>; length?: number }> {
    const objectKey = this.#key(key);
    const abort = new AbortController();
    let output;
    try {
      output = await this.#timed((abortSignal) =>
        this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: objectKey }), {
          abortSignal: AbortSignal.any([abortSignal, abort.signal]),
        })
      );
    } catch (err) {
      throw translate(err, key);
    }
    if (output.Body === undefined) {
      throw new ColmenaError("INTERNAL", {
        cause: new Error(`S3 sent no body for "${objectKey}"`),
      });
    }
    const reader = (output.Body.transformToWebStream() as ReadableStream<Uint8Array>).getReader();
    const idleTimeoutMs = this.#idleTimeoutMs;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const watchdog = new Watchdog(idleTimeoutMs, () => {
          abort.abort();
          reader.cancel().catch(() => {});
        });
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          throw watchdog.fired ? idle(idleTimeoutMs, err) : translate(err, key);
        } finally {
          watchdog.stop();
        }
        if (watchdog.fired) throw idle(idleTimeoutMs);
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      async cancel(reason) {
        await reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    return output.ContentLength === undefined ? { body } : { body, length: output.ContentLength };
  }

  async #bucketExists(): Promise<boolean> {
    try {
      await this.#timed((abortSignal) =>
        this.#client.send(new HeadBucketCommand({ Bucket: this.#bucket }), { abortSignal })
      );
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw translate(err);
    }
  }
}

/**
 * Builds an {@linkcode S3BlobStore} and makes sure its bucket exists (creating it unless `createBucket` is
 * `false`); rejects with `BLOB_UNAVAILABLE` when S3 cannot be reached.
 */
export async function openS3BlobStore(options: S3BlobStoreOptions): Promise<S3BlobStore> {
  const store = new S3BlobStore(options);
  try {
    if (options.createBucket ?? true) await store.ensureBucket();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

function normalizePrefix(prefix: string): string {
  if (prefix === "") return "";
  const trimmed = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
  assertBlobKey(trimmed);
  return `${trimmed}/`;
}

/** The caller's stream, seen through a pass-through that remembers whether the caller's side failed. */
interface TrackedSource {
  readonly stream: ReadableStream<Uint8Array>;
  readonly failure: { error: unknown } | undefined;
  /** Cancels the caller's stream, whoever holds the pass-through. */
  cancel(reason: unknown): Promise<void>;
}

/** Wraps the caller's stream; the watchdog is paused while the upload waits on the caller. */
function trackSource(data: ReadableStream<Uint8Array>, watchdog: Watchdog): TrackedSource {
  const reader = data.getReader();
  const tracked: {
    stream: ReadableStream<Uint8Array>;
    failure: { error: unknown } | undefined;
    cancel(reason: unknown): Promise<void>;
  } = {
    stream: new ReadableStream<Uint8Array>({
      async pull(controller) {
        let next: ReadableStreamReadResult<Uint8Array>;
        watchdog.pause();
        try {
          next = await reader.read();
        } catch (error) {
          tracked.failure = { error };
          throw error;
        } finally {
          watchdog.resume();
        }
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      async cancel(reason) {
        await reader.cancel(reason);
      },
    }, { highWaterMark: 0 }),
    failure: undefined,
    cancel: (reason) => reader.cancel(reason).catch(() => {}),
  };
  return tracked;
}

/** Calls `onIdle` once when `ms` pass without a `kick()`, not counting time spent paused. */
class Watchdog {
  readonly #ms: number;
  readonly #onIdle: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #paused = false;
  #stopped = false;
  fired = false;

  constructor(ms: number, onIdle: () => void) {
    this.#ms = ms;
    this.#onIdle = onIdle;
    this.kick();
  }

  kick(): void {
    clearTimeout(this.#timer);
    if (this.#paused || this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.fired = true;
      this.stop();
      this.#onIdle();
    }, this.#ms);
  }

  pause(): void {
    this.#paused = true;
    clearTimeout(this.#timer);
  }

  resume(): void {
    this.#paused = false;
    this.kick();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}

function timedOut(ms: number, cause: unknown): ColmenaError {
  return new ColmenaError("BLOB_UNAVAILABLE", {
    cause: new Error(`S3 did not answer within ${ms} ms`, { cause }),
  });
}

function idle(ms: number, cause?: unknown): ColmenaError {
  return new ColmenaError("BLOB_UNAVAILABLE", {
    cause: new Error(`S3 transfer made no progress for ${ms} ms`, { cause }),
  });
}

function errorName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

function statusOf(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null || !("$metadata" in err)) return undefined;
  const metadata = err.$metadata;
  if (typeof metadata !== "object" || metadata === null || !("httpStatusCode" in metadata)) {
    return undefined;
  }
  return typeof metadata.httpStatusCode === "number" ? metadata.httpStatusCode : undefined;
}

const TRANSIENT_CODES = new Set([
  "SlowDown",
  "ServiceUnavailable",
  "InternalError",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
]);

function isTransientCode(code: string | undefined): boolean {
  return code !== undefined && TRANSIENT_CODES.has(code);
}

/**
 * Translates an SDK failure: a missing object (`NoSuchKey`, or 404 when reading `key`) is `NOT_FOUND`; no
 * HTTP answer (network), 5xx, 429 or a throttling code is `BLOB_UNAVAILABLE`; any other answer, or a missing
 * Deno permission, is `INTERNAL`.
 */
function translate(err: unknown, key?: string): ColmenaError {
  if (err instanceof ColmenaError) return err;
  // A missing Deno permission is a deployment error, not an outage.
  if (err instanceof Deno.errors.NotCapable) return new ColmenaError("INTERNAL", { cause: err });
  const name = errorName(err);
  const status = statusOf(err);
  if (key !== undefined && (name === "NoSuchKey" || (status === 404 && name !== "NoSuchBucket"))) {
    return blobNotFound(key, err);
  }
  if (status === undefined || status >= 500 || status === 429 || isTransientCode(name)) {
    return new ColmenaError("BLOB_UNAVAILABLE", { cause: err });
  }
  return new ColmenaError("INTERNAL", { cause: err });
}
