/**
 * Access tokens and the tokens file: how a token looks, how it is made and hashed, and the file that keeps
 * only the hashes. The CLI (`cliente token crear|listar|revocar`) writes the file; the server reads it
 * (`server/tokens.ts`) and checks each `hello`'s token against it.
 *
 * A token is `clm_<id>_<secret>`: `id` is 12 hexadecimal digits, public, so that the server finds the entry
 * without scanning; `secret` is 32 random bytes (`node:crypto` `randomBytes`) in base64url. The file keeps
 * the SHA-256 of the whole token. A slow hash (scrypt) guards passwords, which people choose and which can be
 * guessed; a 256-bit random secret cannot be guessed, so one SHA-256 is as strong as scrypt here and costs
 * microseconds per `hello` instead of tens of milliseconds (which would itself be a denial of service).
 *
 * The file has one JSON object per line (`{"id","name","role","types"?,"sha256","createdAt"}`); blank lines
 * and lines starting with `#` are ignored.
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";

/** What a token looks like; the first group is its public id. */
export const TOKEN_PATTERN: RegExp = /^clm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** What a principal's name may be: letters without accents, digits, `_ . @ -`, 1 to 100 characters. */
export const PRINCIPAL_NAME: RegExp = /^[A-Za-z0-9_.@-]{1,100}$/;

/** One line of the tokens file. */
export const TokenEntry = z.strictObject({
  /** The token's public id (the 12 hexadecimal digits after `clm_`). */
  id: z.string().regex(/^[0-9a-f]{12}$/),
  /** The principal the token stands for. */
  name: z.string().regex(PRINCIPAL_NAME),
  /** `cliente`: its own tasks only; `admin`: every task, `dlq` and `workers`. */
  role: z.enum(["cliente", "admin"]),
  /** The task types it may submit; absent means any. */
  types: z.array(z.string().min(1).max(64)).min(1).optional(),
  /** The SHA-256 of the whole token, in hexadecimal. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** When it was made (ISO 8601). */
  createdAt: z.string().optional(),
});

/** One line of the tokens file, as parsed. */
export type TokenEntry = z.output<typeof TokenEntry>;

/** A tokens file that cannot be used: its message is Spanish and names the file and line. */
export class TokenFileError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TokenFileError";
  }
}

/** The SHA-256 of a token, in hexadecimal: what the tokens file keeps. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A new random token and its entry (which holds only its hash). */
export function newToken(
  name: string,
  options: { role: "cliente" | "admin"; types?: readonly string[] | undefined },
): { token: string; entry: TokenEntry } {
  const id = randomBytes(6).toString("hex");
  const token = `clm_${id}_${randomBytes(32).toString("base64url")}`;
  const entry = TokenEntry.parse({
    id,
    name,
    role: options.role,
    ...(options.types === undefined ? {} : { types: [...options.types] }),
    sha256: hashToken(token),
    createdAt: new Date().toISOString(),
  });
  return { token, entry };
}

/** The public id of a well-formed token, or `undefined`. */
export function tokenId(token: string): string | undefined {
  return TOKEN_PATTERN.exec(token)?.[1];
}

/**
 * The entries of a tokens file's text; throws {@linkcode TokenFileError} naming the first bad line (not
 * JSON, a field missing or wrong, an id used twice).
 */
export function parseTokenFile(text: string, path: string): TokenEntry[] {
  const entries: TokenEntry[] = [];
  const ids = new Set<string>();
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const where = `${path}, línea ${index + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (err) {
      throw new TokenFileError(`El fichero de tokens ${where} no es JSON válido`, { cause: err });
    }
    const parsed = TokenEntry.safeParse(json);
    if (!parsed.success) {
      const fields = [...new Set(parsed.error.issues.map((i) => i.path.join(".") || "(línea)"))];
      throw new TokenFileError(
        `El fichero de tokens ${where} no es una entrada válida (revise: ${fields.join(", ")})`,
      );
    }
    if (ids.has(parsed.data.id)) {
      throw new TokenFileError(`El fichero de tokens ${where} repite el id ${parsed.data.id}`);
    }
    ids.add(parsed.data.id);
    entries.push(parsed.data);
  });
  return entries;
}

/** One line of the tokens file for `entry`, newline included. */
export function formatTokenEntry(entry: TokenEntry): string {
  return `${JSON.stringify(entry)}\n`;
}
