/**
 * `Transfers`: files uploaded in pieces, and objects (large outputs) downloaded in chunks.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { ColmenaError } from "../shared/errors.ts";
import type { Reply } from "../shared/protocol.ts";
import { type PendingRequests, unexpectedReply } from "./requests.ts";

/** Bytes of one `upload` piece. */
const UPLOAD_PIECE_BYTES = 512 * 1024;

/** Options of {@linkcode Transfers}. */
export interface TransfersOptions {
  /** Connects if needed, before a transfer starts. */
  readonly connect: () => Promise<unknown>;
  /** The requests in flight, through which pieces go and chunks are asked for. */
  readonly requests: PendingRequests;
}

/** Uploads and downloads over the client's connection, one request per piece. */
export class Transfers {
  readonly #options: TransfersOptions;
  /** The chunks received so far of each download in flight, by request id. */
  readonly #downloads = new Map<string, Buffer[]>();

  constructor(options: TransfersOptions) {
    this.#options = options;
  }

  /** Uploads a file in pieces and resolves with its reference; memory stays bounded whatever its size. */
  async upload(
    data: Uint8Array | ReadableStream<Uint8Array>,
  ): Promise<{ ref: string; bytes: number }> {
    const { connect, requests } = this.#options;
    await connect();
    const stream = data instanceof Uint8Array ? ReadableStream.from([data]) : data;
    let uploadId: string | undefined;
    let held = Buffer.alloc(0);
    const send = async (piece: Buffer, last: boolean) => {
      const reply = await requests.request({
        type: "upload",
        id: requests.nextId(),
        data: piece.toString("base64"),
        last,
        ...(uploadId === undefined ? {} : { uploadId }),
      });
      if (reply.type === "uploading") uploadId = reply.uploadId;
      else if (reply.type === "uploaded") return { ref: reply.ref, bytes: reply.bytes };
      else throw unexpectedReply(reply);
      return undefined;
    };
    for await (const part of stream) {
      held = Buffer.concat([held, part]);
      while (held.length > UPLOAD_PIECE_BYTES) {
        await send(held.subarray(0, UPLOAD_PIECE_BYTES), false);
        held = held.subarray(UPLOAD_PIECE_BYTES);
      }
    }
    const done = await send(held, true);
    if (done === undefined) throw new ColmenaError("INTERNAL");
    return done;
  }

  /** Downloads an object by reference. */
  async download(ref: string): Promise<Uint8Array> {
    const { connect, requests } = this.#options;
    await connect();
    const id = requests.nextId();
    this.#downloads.set(id, []);
    try {
      const reply = await requests.request({ type: "download", id, ref });
      if (reply.type !== "chunk") throw unexpectedReply(reply);
      return new Uint8Array(Buffer.concat(this.#downloads.get(id) ?? []));
    } finally {
      this.#downloads.delete(id);
    }
  }

  /** Downloads a large output stored by reference, and decodes its JSON. */
  async downloadOutput(ref: string): Promise<unknown> {
    const bytes = await this.download(ref);
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  /** Keeps a chunk of a download in flight; the last one's reply settles the download's request. */
  receiveChunk(frame: Extract<Reply, { type: "chunk" }>): void {
    this.#downloads.get(frame.id)?.push(Buffer.from(frame.data, "base64"));
  }

  /** Drops the chunks received so far: after a reconnect, each download is asked for again from the start. */
  restartDownloads(): void {
    for (const parts of this.#downloads.values()) parts.length = 0;
  }
}
