/**
 * File transfers between a client and the object store: `upload` (pieces in order, streamed into an object)
 * and `download` (an output object, streamed back in `chunk` frames at the reader's pace).
 *
 * An upload's key records its owner (`uploadKey`); a download is served only to the owner of the output's
 * task, or an admin: anyone else gets `NOT_FOUND`, exactly as for an output that does not exist.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { outputTaskId, uploadKey } from "../shared/blob_keys.ts";
import { ColmenaError } from "../shared/errors.ts";
import type { BlobStore, TaskStore } from "../shared/ports.ts";
import type { Request } from "../shared/protocol.ts";
import type { ClientConnection } from "./connection.ts";
import { mayAccess } from "./principal.ts";
import type { PrincipalQuotas } from "./quotas.ts";

/** Bytes of one `chunk` frame of a download. */
export const DOWNLOAD_CHUNK_BYTES = 768 * 1024;

/** A file being uploaded on a connection: its pieces stream, in order, into the object store. */
export interface Upload {
  /** The object's key. */
  readonly ref: string;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Settles when the object store has the whole file (or failed). */
  readonly stored: Promise<void>;
  /** Bytes received so far. */
  bytes: number;
  /** The pieces' work, one after another. */
  chain: Promise<void>;
}

/** What transfers need. */
export interface TransferDeps {
  readonly blobs: BlobStore;
  /** The task store: whose output a download is. */
  readonly store: Pick<TaskStore, "get">;
  /** Largest file one upload may hold, in bytes. */
  readonly maxUploadBytes: number;
  /** Uploads open at once on one connection (each holds a file or a stream to the object store). */
  readonly maxUploadsPerConnection: number;
  /** Uploads open at once on the whole server. */
  readonly maxUploads: number;
  /** Uploads open now on the whole server; shared by every connection. */
  readonly openUploads: { count: number };
  /** Uploads and bytes per principal. */
  readonly quotas?: PrincipalQuotas;
}

function _abortUpload(upload: Upload): void {
  upload.writer.abort(new ColmenaError("CONNECTION_CLOSED")).catch(() => {});
}

/** Forgets an upload of `client` that ended (stored, refused or aborted); it no longer counts as open. */
function _endUpload(client: ClientConnection, uploadId: string, deps: TransferDeps): void {
  if (client.uploads.delete(uploadId)) deps.openUploads.count--;
}

/** Aborts the uploads still under way on a connection that ended; nothing of them is kept. */
export function abortUploads(client: ClientConnection, deps: TransferDeps): void {
  for (const upload of client.uploads.values()) _abortUpload(upload);
  deps.openUploads.count -= client.uploads.size;
  client.uploads.clear();
}

/** Takes one piece of an uploaded file, streaming it into the object store in order. */
export function upload(
  client: ClientConnection,
  request: Extract<Request, { type: "upload" }>,
  deps: TransferDeps,
): Promise<void> {
  let uploadId = request.uploadId;
  let current: Upload | undefined;
  if (uploadId === undefined) {
    if (client.uploads.size >= deps.maxUploadsPerConnection) {
      throw new ColmenaError("QUOTA_EXCEEDED", {
        message:
          `Demasiadas subidas abiertas en esta conexión (máximo ${deps.maxUploadsPerConnection}); termine alguna antes`,
      });
    }
    if (deps.openUploads.count >= deps.maxUploads) {
      throw new ColmenaError("OVERLOADED", {
        message: `Demasiadas subidas abiertas en el servidor (máximo ${deps.maxUploads})`,
      });
    }
    deps.quotas?.admitUpload(client.principal);
    uploadId = crypto.randomUUID();
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const ref = uploadKey(uploadId, client.principal.name);
    const stored = deps.blobs.put(ref, readable);
    stored.catch(() => {}); // awaited on the last piece; an abort is no unhandled rejection
    current = { ref, writer: writable.getWriter(), stored, bytes: 0, chain: Promise.resolve() };
    client.uploads.set(uploadId, current);
    deps.openUploads.count++;
  } else {
    current = client.uploads.get(uploadId);
    if (current === undefined) {
      client.sendError(
        request.id,
        new ColmenaError("NOT_FOUND", {
          message: `No hay ninguna subida en curso con id "${
            uploadId.slice(0, 64)
          }" en esta conexión`,
        }),
      );
      return Promise.resolve();
    }
  }
  const id = uploadId;
  const held = current;
  const step = held.chain.then(async () => {
    const piece = new Uint8Array(Buffer.from(request.data, "base64"));
    held.bytes += piece.length;
    if (held.bytes > deps.maxUploadBytes) {
      _endUpload(client, id, deps);
      _abortUpload(held);
      throw new ColmenaError("FRAME_TOO_LARGE", {
        message: `El fichero supera el máximo de ${deps.maxUploadBytes} bytes`,
      });
    }
    try {
      deps.quotas?.addUploadBytes(client.principal, piece.length);
    } catch (err) {
      _endUpload(client, id, deps);
      _abortUpload(held);
      throw err;
    }
    if (piece.length > 0) await held.writer.write(piece);
    if (!request.last) {
      client.send({ type: "uploading", id: request.id, uploadId: id, bytes: held.bytes });
      return;
    }
    _endUpload(client, id, deps);
    await held.writer.close();
    await held.stored;
    client.send({
      type: "uploaded",
      id: request.id,
      uploadId: id,
      ref: held.ref,
      bytes: held.bytes,
    });
  });
  held.chain = step.catch(() => {});
  return step;
}

/** Streams an object (a large output) back in `chunk` frames, waiting for slow readers. */
export async function download(
  client: ClientConnection,
  request: Extract<Request, { type: "download" }>,
  deps: TransferDeps,
): Promise<void> {
  const taskId = outputTaskId(request.ref);
  const owner = taskId === undefined ? undefined : (await deps.store.get(taskId))?.owner ?? "";
  if (owner === undefined || !mayAccess(client.principal, owner)) {
    return client.sendError(
      request.id,
      new ColmenaError("NOT_FOUND", {
        message: `"${request.ref.slice(0, 128)}" no es una salida descargable`,
      }),
    );
  }
  const stream = await deps.blobs.stream(request.ref);
  let seq = 0;
  let held = Buffer.alloc(0);
  const send = async (bytes: Buffer, last: boolean) => {
    client.send({
      type: "chunk",
      id: request.id,
      seq: seq++,
      data: bytes.toString("base64"),
      last,
    });
    if (client.queuedChars > 4 * DOWNLOAD_CHUNK_BYTES) await client.flushed();
  };
  for await (const part of stream) {
    if (client.closed) return; // leaving the loop cancels the stream
    held = Buffer.concat([held, part]);
    while (held.length >= DOWNLOAD_CHUNK_BYTES) {
      await send(held.subarray(0, DOWNLOAD_CHUNK_BYTES), false);
      held = held.subarray(DOWNLOAD_CHUNK_BYTES);
    }
  }
  await send(held, true);
}
