/**
 * Chooses the object store from the configuration: S3 when a bucket is set, otherwise a folder.
 *
 * Both the server and the worker store objects (large payloads, large outputs, uploaded files), so with
 * workers on other hosts the store must be S3 (or a folder they all share).
 *
 * @module
 */
import { redactUrl } from "./redact.ts";
import { ColmenaError } from "./errors.ts";
import type { BlobStore } from "./ports.ts";
import { openFolderBlobStore } from "./adapters/fs_blob.ts";

/** The object-storage part of a role's configuration. */
export interface BlobConfig {
  readonly dataDir: string;
  readonly s3Endpoint?: string | undefined;
  readonly s3Bucket?: string | undefined;
  readonly s3Region: string;
  readonly s3Prefix: string;
  readonly awsAccessKeyId?: string | undefined;
  readonly awsSecretAccessKey?: string | undefined;
  readonly awsSessionToken?: string | undefined;
}

/** A short Spanish description of where objects go, for the start-up log. */
export function describeBlobStore(config: BlobConfig): string {
  return config.s3Bucket === undefined
    ? `carpeta ${config.dataDir}/blobs`
    : `S3 ${
      config.s3Endpoint === undefined ? "AWS" : redactUrl(config.s3Endpoint)
    } bucket ${config.s3Bucket}`;
}

/**
 * Opens the object store the configuration names. The S3 adapter (and the AWS SDK behind it, some 16 MB of
 * modules) is imported only when a bucket is configured: a role that keeps objects in a folder never loads
 * it, which saves it about 14 MB of memory. `deno compile` still bundles it (the specifier is a literal).
 */
export async function openBlobStore(config: BlobConfig): Promise<BlobStore> {
  if (config.s3Bucket === undefined) return await openFolderBlobStore(`${config.dataDir}/blobs`);
  if (config.awsAccessKeyId === undefined || config.awsSecretAccessKey === undefined) {
    throw new ColmenaError("BLOB_UNAVAILABLE", {
      message: "S3_BUCKET está definido, pero faltan AWS_ACCESS_KEY_ID y AWS_SECRET_ACCESS_KEY",
    });
  }
  const { openS3BlobStore } = await import("./adapters/s3.ts");
  return await openS3BlobStore({
    bucket: config.s3Bucket,
    region: config.s3Region,
    prefix: config.s3Prefix,
    credentials: {
      accessKeyId: config.awsAccessKeyId,
      secretAccessKey: config.awsSecretAccessKey,
      ...(config.awsSessionToken === undefined ? {} : { sessionToken: config.awsSessionToken }),
    },
    ...(config.s3Endpoint === undefined ? {} : { endpoint: config.s3Endpoint }),
  });
}
