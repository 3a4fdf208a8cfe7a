/**
 * Message signing between servers and workers (as Celery's message signing, with a shared key): every message
 * a role publishes carries an HMAC-SHA256 of its kind, its message id and its exact body bytes in the
 * `x-colmena-firma` header; with a key configured, a consumer drops or dead-letters any message whose
 * signature is missing or wrong, before reading it.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHmac, timingSafeEqual } from "node:crypto";
import * as log from "../../log.ts";
import type { Outgoing } from "./session.ts";

/** The AMQP header that carries a message's signature. */
export const SIGNATURE_HEADER = "x-colmena-firma";

/**
 * What a message is, signed with it so that a signed message of one kind cannot pass for another: a task
 * (task queues, retries, dead letters), a result batch, a heartbeat, a control message (cancel stream).
 */
export type SignedKind = "task" | "results" | "heartbeat" | "control";

const PREFIX = "v1=";

/** Signs and verifies messages with one shared key. */
export class MessageSigner {
  readonly #key: Buffer;

  /** @param key the shared key, at least 32 bytes. */
  constructor(key: Uint8Array) {
    if (key.byteLength < 32) {
      throw new RangeError("Cannot sign messages: key shorter than 32 bytes");
    }
    this.#key = Buffer.from(key);
  }

  #mac(kind: SignedKind, messageId: string, body: Uint8Array): Buffer {
    return createHmac("sha256", this.#key)
      .update(`colmena\n${kind}\n${messageId}\n`, "utf8")
      .update(body)
      .digest();
  }

  /** The signature header's value for a message. */
  sign(kind: SignedKind, body: Uint8Array, messageId = ""): string {
    return PREFIX + this.#mac(kind, messageId, body).toString("base64");
  }

  /** Whether `signature` is this key's signature of the message, compared in constant time. */
  verify(kind: SignedKind, body: Uint8Array, options: SignedParts): boolean {
    const { signature, messageId } = options;
    if (typeof signature !== "string" || !signature.startsWith(PREFIX)) return false;
    const given = Buffer.from(signature.slice(PREFIX.length), "base64");
    const expected = this.#mac(kind, typeof messageId === "string" ? messageId : "", body);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/** The parts of a received message that its signature covers besides the body. */
export interface SignedParts {
  readonly signature: unknown;
  readonly messageId: unknown;
}

/** `message` with its signature header added, or unchanged without a signer. */
export function signed(
  signer: MessageSigner | undefined,
  kind: SignedKind,
  message: Outgoing,
): Outgoing {
  if (signer === undefined) return message;
  const messageId = typeof message.props.messageId === "string" ? message.props.messageId : "";
  const headers = (message.props.headers ?? {}) as Record<string, unknown>;
  return {
    ...message,
    props: {
      ...message.props,
      headers: { ...headers, [SIGNATURE_HEADER]: signer.sign(kind, message.body, messageId) },
    },
  };
}

/** A delivered message, as far as verification reads it. */
export interface ReceivedMessage {
  readonly content: Uint8Array;
  readonly properties: { readonly headers?: unknown; readonly messageId?: unknown };
}

/**
 * Whether a delivered message may be used: always without a signer; with one, only when it carries this
 * key's signature for `kind`.
 */
export function verified(
  signer: MessageSigner | undefined,
  kind: SignedKind,
  msg: ReceivedMessage,
): boolean {
  if (signer === undefined) return true;
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
  return signer.verify(kind, msg.content, {
    signature: headers[SIGNATURE_HEADER],
    messageId: msg.properties.messageId,
  });
}

/** How often the count of rejected messages of one queue is logged, after the first one. */
const REJECT_LOG_MS = 10_000;

/**
 * Logs rejected messages per queue without flooding: one line for the first, then at most one line every
 * 10 s with how many more came.
 */
export class RejectLog {
  readonly #queues = new Map<string, { last: number; since: number }>();

  /** Notes one rejected message of `queue` and `what` was done with it (`se descarta`, …). */
  note(queue: string, what: string): void {
    const now = Date.now();
    const seen = this.#queues.get(queue);
    if (seen === undefined) {
      this.#queues.set(queue, { last: now, since: 0 });
      log.warn(`Mensaje sin firma válida en "${queue}"; ${what}`);
      return;
    }
    seen.since++;
    if (now - seen.last >= REJECT_LOG_MS) {
      log.warn(`${seen.since} mensajes más sin firma válida en "${queue}"; ${what}`);
      seen.last = now;
      seen.since = 0;
    }
  }
}
