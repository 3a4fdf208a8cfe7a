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
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { ColmenaError } from "../errors.ts";
import type { BlobStore } from "../ports.ts";
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
  /** Credentials, passed explicitly: the SDK's default chain (env, `~/.aws`, instance metadata) is never used. */
  credentials: S3Credentials;
  /** The URL of an S3-compatible server (`S3_ENDPOINT`); AWS's own endpoint when absent. */
  endpoint?: string;
  /** The region. @defaultValue `"us-east-1"` */
  region?: string;
  /** Addresses buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`. @defaultValue `true` with an `endpoint`, else `false` */
  forcePathStyle?: boolean;
  /** Prepended to every key, so several users of one bucket stay apart (`"colmena/"`); a `/` is added if missing. @defaultValue `""` */
  prefix?: string;
  /** Bytes per part of a streamed (multipart) upload, at least 5 MiB; memory per upload is `partSize × queueSize`. @defaultValue `5 MiB` */
  partSize?: number;
  /** Parts of one upload sent at once. @defaultValue `2` */
  queueSize?: number;
  /** Attempts per request, the first included, before a transient failure becomes `BLOB_UNAVAILABLE`. @defaultValue `3` */
  maxAttempts?: number;
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
    // Every setting the SDK would otherwise look up in the environment or ~/.aws is given here.
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
        await this.#client.send(new CreateBucketCommand({ Bucket: this.#bucket }));
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
      let source: TrackedSource | undefined;
      try {
        source = data instanceof Uint8Array ? undefined : trackSource(data);
        const upload = new Upload({
          client: this.#client,
          params: { Bucket: this.#bucket, Key: objectKey, Body: source?.stream ?? data },
          partSize: this.#partSize,
          queueSize: this.#queueSize,
          leavePartsOnError: false,
        });
        await upload.done();
      } catch (err) {
        // The caller's own stream failed: that is its error, not the store's.
        if (source?.failure !== undefined) throw source.failure.error;
        if (data instanceof ReadableStream && !data.locked) await data.cancel(err).catch(() => {});
        throw translate(err, key);
      }
    });
  }

  /** The object's bytes; rejects with `NOT_FOUND` when there is none. */
  get(key: string): Promise<Uint8Array> {
    return this.#track(async () => {
      const body = await this.#getBody(key);
      try {
        return await body.transformToByteArray();
      } catch (err) {
        throw translate(err, key);
      }
    });
  }

  /** The object as a stream; rejects with `NOT_FOUND` when there is none. Cancel the stream to stop the download. */
  stream(key: string): Promise<ReadableStream<Uint8Array>> {
    return this.#track(async () => {
      const body = await this.#getBody(key);
      const source = body.transformToWebStream() as ReadableStream<Uint8Array>;
      const reader = source.getReader();
      // Re-wrapped so that a failure mid-download reaches the reader as `BLOB_UNAVAILABLE`.
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          let next: ReadableStreamReadResult<Uint8Array>;
          try {
            next = await reader.read();
          } catch (err) {
            throw translate(err, key);
          }
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        },
        async cancel(reason) {
          await reader.cancel(reason);
        },
      }, { highWaterMark: 0 });
    });
  }

  /** Deletes objects, 1000 per request; keys that do not exist are ignored. */
  delete(keys: readonly string[]): Promise<void> {
    return this.#track(async () => {
      const objectKeys = keys.map((key) => this.#key(key));
      for (let i = 0; i < objectKeys.length; i += 1000) {
        const batch = objectKeys.slice(i, i + 1000);
        let output;
        try {
          output = await this.#client.send(
            new DeleteObjectsCommand({
              Bucket: this.#bucket,
              Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
            }),
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

  /** Waits for requests in progress, then closes the client's connections. Later calls reject. */
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

  async #getBody(key: string) {
    const objectKey = this.#key(key);
    let output;
    try {
      output = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: objectKey }),
      );
    } catch (err) {
      throw translate(err, key);
    }
    if (output.Body === undefined) {
      throw new ColmenaError("INTERNAL", {
        cause: new Error(`S3 sent no body for "${objectKey}"`),
      });
    }
    return output.Body;
  }

  async #bucketExists(): Promise<boolean> {
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.#bucket }));
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
}

function trackSource(data: ReadableStream<Uint8Array>): TrackedSource {
  const reader = data.getReader();
  const tracked: { stream: ReadableStream<Uint8Array>; failure: { error: unknown } | undefined } = {
    stream: new ReadableStream<Uint8Array>({
      async pull(controller) {
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (error) {
          tracked.failure = { error };
          throw error;
        }
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      async cancel(reason) {
        await reader.cancel(reason);
      },
    }, { highWaterMark: 0 }),
    failure: undefined,
  };
  return tracked;
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
