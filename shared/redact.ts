/**
 * Keeping secrets out of what colmena prints: URLs are shown without their password or secret query values
 * (read with the URL parser), and every secret the configuration holds is registered so that the log
 * replaces it wherever it would appear, a vendor's error message included.
 *
 * @module
 */

/** What replaces a secret in printed text. */
export const REDACTED = "***";

/** Query parameters whose values are secrets (`password`, `sslpassword`, `token`, `secret`, `key`…). */
const SECRET_PARAM = /pass|secret|token|key|credential|auth/i;

/** Shorter values are not scrubbed from free text: they would match ordinary words. */
const MIN_SCRUBBED = 4;

/** Well-known default credentials: not secret, and common words in ordinary lines. */
const PUBLIC_DEFAULTS = new Set(["guest"]);

const secrets = new Set<string>();

/**
 * `url` with its password and the values of secret-looking query parameters replaced by `***`, read with the
 * URL parser (so `guest:Wr0ngP@ss@host` keeps its host); an unparsable URL is not shown at all.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "(URL no válida)";
  }
  let changed = false;
  if (parsed.password !== "") {
    parsed.password = REDACTED;
    changed = true;
  }
  for (const key of [...new Set(parsed.searchParams.keys())]) {
    if (SECRET_PARAM.test(key)) {
      parsed.searchParams.set(key, REDACTED);
      changed = true;
    }
  }
  // Shown as typed when nothing is secret (the parser would normalise it).
  if (!changed) return url;
  return parsed.href.replaceAll(encodeURIComponent(REDACTED), REDACTED);
}

/** The secrets a URL holds: its password (as typed and decoded) and its secret query values. */
export function urlSecrets(url: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not a URL: whatever follows the scheme could be a secret; scrub the whole value.
    return [url];
  }
  const found: string[] = [];
  if (parsed.password !== "") {
    found.push(parsed.password);
    try {
      found.push(decodeURIComponent(parsed.password));
    } catch {
      // a malformed escape: the raw form is registered
    }
  }
  for (const [key, value] of parsed.searchParams) {
    if (SECRET_PARAM.test(key) && value !== "") found.push(value, encodeURIComponent(value));
  }
  return found;
}

/** Registers secret values: {@linkcode scrub} replaces them in any text. */
export function registerSecrets(values: Iterable<string | undefined>): void {
  for (const value of values) {
    if (value !== undefined && value.length >= MIN_SCRUBBED && !PUBLIC_DEFAULTS.has(value)) {
      secrets.add(value);
    }
  }
}

/** `text` with every registered secret replaced by `***`. */
export function scrub(text: string): string {
  let out = text;
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.replaceAll(secret, REDACTED);
  }
  return out;
}
