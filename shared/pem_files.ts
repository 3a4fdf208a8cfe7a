/**
 * Reading the PEM files that TLS options name (certificates, keys, CAs), with Spanish errors.
 *
 * @module
 */

/** A TLS setting that cannot be used (a file missing or unreadable, a bad certificate), in Spanish. */
export class TlsSetupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TlsSetupError";
  }
}

/**
 * Reads the PEM file at `path`; `what` names it in the error (`el certificado TLS (--tls-cert)`).
 * A missing permission goes up as it is, so that the caller can name the flag.
 *
 * @throws {TlsSetupError} when the file does not exist or cannot be read.
 */
export async function readPemFile(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (cause) {
    if (cause instanceof Deno.errors.NotCapable) throw cause;
    const why = cause instanceof Deno.errors.NotFound ? "no existe" : "no se puede leer";
    throw new TlsSetupError(`No se puede usar ${what}: «${path}» ${why}`, { cause });
  }
}

/**
 * Whether `cause` (or its cause) is a TLS peer certificate that could not be verified (unknown CA,
 * self-signed, wrong name), as node's TLS and rustls word it.
 */
export function isUntrustedCertificate(cause: unknown): boolean {
  for (let e = cause, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (
      /certificate|UnknownIssuer|self.signed|unable to (get|verify)|CERT_|altnames/i.test(e.message)
    ) {
      return true;
    }
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /CERT|SELF_SIGNED|ALTNAME/.test(code)) return true;
  }
  return false;
}
