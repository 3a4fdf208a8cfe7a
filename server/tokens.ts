/**
 * Authentication by token on the server: the registry read from the tokens file (`--tokens`), which turns a
 * `hello`'s token into a {@linkcode Principal}, and the slowdown of repeated failures from one address.
 *
 * Only hashes are held (see `shared/tokens.ts`); a presented token is hashed and compared with
 * `timingSafeEqual`, and an unknown id is compared against a dummy hash, so that the time of an answer says
 * nothing about how much of a token was right.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { timingSafeEqual } from "node:crypto";
import {
  hashToken,
  parseTokenFile,
  type TokenEntry,
  TokenFileError,
  tokenId,
} from "../shared/tokens.ts";
import type { Principal } from "./principal.ts";

/** Compared against when a token's id is unknown: the work is the same as for a known one. */
const DUMMY_DIGEST = Buffer.alloc(32);

/** The tokens the server accepts, by public id. */
export class TokenRegistry {
  readonly #byId = new Map<string, { entry: TokenEntry; digest: Buffer }>();

  constructor(entries: readonly TokenEntry[]) {
    for (const entry of entries) {
      this.#byId.set(entry.id, { entry, digest: Buffer.from(entry.sha256, "hex") });
    }
  }

  /** How many tokens are accepted. */
  get size(): number {
    return this.#byId.size;
  }

  /** The principal of `token`, or `undefined` when it is malformed, unknown or wrong. */
  verify(token: string | undefined): Principal | undefined {
    if (token === undefined) return undefined;
    const id = tokenId(token);
    if (id === undefined) return undefined;
    const known = this.#byId.get(id);
    const presented = Buffer.from(hashToken(token), "hex");
    const equal = timingSafeEqual(presented, known?.digest ?? DUMMY_DIGEST);
    if (!equal || known === undefined) return undefined;
    const { name, role, types } = known.entry;
    return { name, role, ...(types === undefined ? {} : { types }) };
  }
}

/**
 * Reads the tokens file at `path`; throws {@linkcode TokenFileError} (Spanish) when it cannot be read, is
 * malformed or holds no token.
 */
export async function loadTokenRegistry(path: string): Promise<TokenRegistry> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? "no existe"
      : err instanceof Deno.errors.NotCapable
      ? "falta el permiso de lectura: guárdelo en la carpeta de datos (./data) o dé --allow-read"
      : "no se puede leer";
    throw new TokenFileError(`El fichero de tokens ${path}: ${why}`, { cause: err });
  }
  const entries = parseTokenFile(text, path);
  if (entries.length === 0) {
    throw new TokenFileError(
      `El fichero de tokens ${path} no tiene ningún token; cree uno con: ` +
        `deno task cliente token crear <nombre> --tokens ${path}`,
    );
  }
  return new TokenRegistry(entries);
}

/** Addresses remembered at most; the oldest is forgotten first. */
const MAX_ADDRESSES = 10_000;
/** A failure older than this is forgotten. */
const FAILURE_MEMORY_MS = 10 * 60_000;

/**
 * Repeated authentication failures from one address wait longer and longer before their answer: none for
 * the first, then `baseMs`, doubling up to `maxMs`. Failures are forgotten after 10 minutes without one.
 */
export class FailureThrottle {
  readonly #failures = new Map<string, { count: number; lastAt: number }>();
  readonly #baseMs: number;
  readonly #maxMs: number;

  /** @param baseMs the wait after the second failure; @param maxMs the longest wait. */
  constructor(baseMs = 250, maxMs = 5_000) {
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
  }

  /** Notes one failure from `address`; returns how long to wait before answering it, in milliseconds. */
  failed(address: string, now: number = Date.now()): number {
    const seen = this.#failures.get(address);
    const count = seen !== undefined && now - seen.lastAt < FAILURE_MEMORY_MS ? seen.count + 1 : 1;
    this.#failures.delete(address);
    this.#failures.set(address, { count, lastAt: now });
    if (this.#failures.size > MAX_ADDRESSES) {
      const oldest = this.#failures.keys().next().value;
      if (oldest !== undefined) this.#failures.delete(oldest);
    }
    return count <= 1 ? 0 : Math.min(this.#maxMs, this.#baseMs * 2 ** (count - 2));
  }
}
