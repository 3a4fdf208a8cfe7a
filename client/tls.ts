/**
 * The client's TLS options (`--tls`, `--ca`, `--cert`, `--key`; `TaskClient`'s `tls`, `ca`, `cert`,
 * `key`) and the PEM material they name, as `Deno.connectTls` takes it.
 *
 * @module
 */
import { readPemFile, TlsSetupError } from "../shared/pem_files.ts";

/** TLS options of a client. Each of `ca`, `cert`, `key` is PEM text or the path of a PEM file. */
export interface ClientTlsOptions {
  /** Connect with TLS; implied by `ca`, `cert` or `key`. @defaultValue `false` */
  tls?: boolean | undefined;
  /** The CA that signs the server's certificate. @defaultValue the system's CAs */
  ca?: string | undefined;
  /** The client's certificate, for a server with mutual TLS (`--tls-ca-clientes`). @defaultValue none */
  cert?: string | undefined;
  /** The private key of `cert`. @defaultValue none */
  key?: string | undefined;
}

/** What `Deno.connectTls` takes besides the address. */
export interface TlsMaterial {
  readonly caCerts?: string[];
  readonly cert?: string;
  readonly key?: string;
}

/** Whether the options ask for TLS. */
export function usesTls(options: ClientTlsOptions): boolean {
  return options.tls === true || options.ca !== undefined || options.cert !== undefined ||
    options.key !== undefined;
}

/**
 * Reads the PEM material the options name (text is used as it is, anything else is a file path).
 *
 * @throws {TlsSetupError} when a file does not exist or cannot be read, or only one of `cert`/`key` is given.
 */
export async function loadTlsMaterial(options: ClientTlsOptions): Promise<TlsMaterial> {
  const pem = (value: string, what: string) =>
    value.includes("-----BEGIN") ? Promise.resolve(value) : readPemFile(value, what);
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TlsSetupError("El certificado de cliente (--cert) y su clave (--key) van juntos");
  }
  return {
    ...(options.ca === undefined ? {} : { caCerts: [await pem(options.ca, "la CA (--ca)")] }),
    ...(options.cert === undefined
      ? {}
      : { cert: await pem(options.cert, "el certificado de cliente (--cert)") }),
    ...(options.key === undefined ? {} : { key: await pem(options.key, "la clave (--key)") }),
  };
}
