/**
 * The server's TLS listener (`--tls-cert`/`--tls-key`, optionally `--tls-ca-clientes` for mutual TLS),
 * on `node:tls`: unlike `Deno.listenTls`, it can require and verify a client certificate. Each socket that
 * completes its handshake is handed on as a {@linkcode ByteStream}, with the subject (CN) of its client
 * certificate under mutual TLS.
 *
 * Only TLS 1.2 and 1.3 are accepted. A handshake that does not finish within `handshakeTimeoutMs` is
 * dropped; one that fails (plaintext sent to the port, an old protocol version, a missing or untrusted
 * client certificate) closes that socket only, and is logged at most once per {@linkcode REFUSAL_LOG_MS}.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import { createPrivateKey, X509Certificate } from "node:crypto";
import tls from "node:tls";
import type { TLSSocket } from "node:tls";
import * as log from "../shared/log.ts";
import { readPemFile, TlsSetupError } from "../shared/pem_files.ts";
import type { ByteStream } from "./byte_stream.ts";

/** Where the server's TLS files are, as configured. */
export interface TlsFiles {
  /** The server's certificate chain, PEM. */
  readonly cert: string;
  /** The server's private key, PEM. */
  readonly key: string;
  /** The CA that signs client certificates; set, it makes client certificates required. */
  readonly clientCa?: string | undefined;
}

/** Options of {@linkcode TlsListener.listen}. */
export interface TlsListenerOptions {
  readonly hostname: string;
  readonly port: number;
  /** PEM texts of the certificate, the key and, for mutual TLS, the client CA. */
  readonly pem: TlsFiles;
  /** Longest time a client may take to complete its handshake. */
  readonly handshakeTimeoutMs: number;
  /** Receives each client once its handshake has succeeded. */
  readonly onStream: (stream: ByteStream, peer: TlsPeer) => void;
}

/** What the handshake established about the client. */
export interface TlsPeer {
  /** The subject CN of the client's certificate, under mutual TLS. */
  readonly subject?: string;
}

/** Refused handshakes are logged at most once per this many milliseconds, with how many there were. */
export const REFUSAL_LOG_MS = 10_000;

/** How long a closed socket waits for the peer's close before it is destroyed. */
const CLOSE_WAIT_MS = 1_000;

/** Longest subject CN taken as a principal's name. */
const MAX_SUBJECT_CHARS = 100;

/** Reads the PEM files the configuration names; a missing or unreadable one is a `TlsSetupError`. */
export async function readTlsFiles(files: TlsFiles): Promise<TlsFiles> {
  return {
    cert: await readPemFile(files.cert, "el certificado TLS (--tls-cert)"),
    key: await readPemFile(files.key, "la clave TLS (--tls-key)"),
    ...(files.clientCa === undefined ? {} : {
      clientCa: await readPemFile(files.clientCa, "la CA de clientes (--tls-ca-clientes)"),
    }),
  };
}

/** A listening TLS server; close it with {@linkcode TlsListener.close}. */
export class TlsListener {
  readonly #server: tls.Server;
  readonly #addr: Deno.NetAddr;
  #refused = 0;
  #refusedLoggedAt = 0;

  private constructor(server: tls.Server, addr: Deno.NetAddr) {
    this.#server = server;
    this.#addr = addr;
  }

  /**
   * Listens on `hostname:port`. Rejects with `Deno.errors.AddrInUse` when the port is taken, and with a
   * {@linkcode TlsSetupError} when the certificate or key cannot be used.
   */
  static async listen(options: TlsListenerOptions): Promise<TlsListener> {
    const mutual = options.pem.clientCa !== undefined;
    _checkPem(options.pem);
    let server: tls.Server;
    try {
      server = tls.createServer({
        cert: options.pem.cert,
        key: options.pem.key,
        minVersion: "TLSv1.2",
        handshakeTimeout: options.handshakeTimeoutMs,
        allowHalfOpen: true,
        ...(mutual
          ? { ca: options.pem.clientCa, requestCert: true, rejectUnauthorized: true }
          : {}),
      });
    } catch (cause) {
      throw new TlsSetupError(
        "No se pueden usar el certificado y la clave TLS (¿son PEM y se corresponden?)",
        { cause },
      );
    }
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        reject(
          err.code === "EADDRINUSE" ? new Deno.errors.AddrInUse(err.message, { cause: err }) : err,
        );
      });
      server.listen(options.port, options.hostname, () => resolve());
    });
    const bound = server.address();
    const addr: Deno.NetAddr = {
      transport: "tcp",
      hostname: typeof bound === "object" && bound !== null ? bound.address : options.hostname,
      port: typeof bound === "object" && bound !== null ? bound.port : options.port,
    };
    const listener = new TlsListener(server, addr);
    server.on("error", (err: Error) => log.error("Error en la escucha TLS", err));
    server.on("tlsClientError", (err: Error, socket: TLSSocket) => {
      listener.#noteRefusal(socket, err.message);
      socket.destroy();
    });
    server.on("secureConnection", (socket: TLSSocket) => {
      const peer: { subject?: string } = {};
      if (mutual) {
        const subject = _subjectOf(socket);
        if (!socket.authorized || subject === undefined) {
          listener.#noteRefusal(socket, "certificado de cliente sin CN válido");
          socket.destroy();
          return;
        }
        peer.subject = subject;
      }
      socket.setNoDelay(true);
      options.onStream(new _TlsStream(socket), peer);
    });
    return listener;
  }

  /** The bound address. */
  get addr(): Deno.NetAddr {
    return this.#addr;
  }

  /** Stops accepting; sockets already handed on stay open (their connections close them). */
  close(): void {
    this.#server.close();
  }

  #noteRefusal(socket: TLSSocket, reason: string): void {
    this.#refused++;
    const now = Date.now();
    if (now - this.#refusedLoggedAt < REFUSAL_LOG_MS) return;
    const others = this.#refused - 1;
    this.#refusedLoggedAt = now;
    this.#refused = 0;
    log.warn(
      `Conexión TLS rechazada de ${socket.remoteAddress ?? "?"}: ${reason}` +
        (others > 0 ? ` (y ${others} más desde el aviso anterior)` : ""),
    );
  }
}

/**
 * Checks up front that the certificate, the key and the client CA parse, and that the key is the
 * certificate's (`node:tls` would only find out at the first handshake).
 */
function _checkPem(pem: TlsFiles): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem.cert);
  } catch (cause) {
    throw new TlsSetupError(
      "No se pueden usar el certificado y la clave TLS: --tls-cert no es un certificado PEM",
      { cause },
    );
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(pem.key));
  } catch (cause) {
    throw new TlsSetupError(
      "No se pueden usar el certificado y la clave TLS: --tls-key no es una clave privada PEM",
      { cause },
    );
  }
  if (!matches) {
    throw new TlsSetupError(
      "No se pueden usar el certificado y la clave TLS: la clave de --tls-key no es la de --tls-cert",
    );
  }
  if (pem.clientCa !== undefined) {
    try {
      new X509Certificate(pem.clientCa);
    } catch (cause) {
      throw new TlsSetupError(
        "No se puede usar la CA de clientes: --tls-ca-clientes no es un certificado PEM",
        { cause },
      );
    }
  }
}

/** The subject CN of a verified client certificate, when it is a usable name. */
function _subjectOf(socket: TLSSocket): string | undefined {
  const cn: unknown = socket.getPeerCertificate()?.subject?.CN;
  const name = Array.isArray(cn) ? cn[0] : cn;
  if (typeof name !== "string" || name.length === 0 || name.length > MAX_SUBJECT_CHARS) {
    return undefined;
  }
  // deno-lint-ignore no-control-regex
  return /[\u0000-\u001f\u007f]/.test(name) ? undefined : name;
}

/**
 * A `TLSSocket` as a {@linkcode ByteStream}: reads pull one chunk at a time (the socket is paused while a
 * chunk waits, so a client that sends faster than the server reads is held back by TCP), and a write
 * resolves once the socket has sent it, so a peer that stops reading stalls the write as on plain TCP.
 */
class _TlsStream implements ByteStream {
  readonly #socket: TLSSocket;
  readonly remoteAddr: Deno.Addr;
  #chunk: Uint8Array | undefined;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  /** Rejecters of the writes not yet sent: a socket that closes fails them, sent or not. */
  readonly #writes = new Set<(err: Error) => void>();

  constructor(socket: TLSSocket) {
    this.#socket = socket;
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "?",
      port: socket.remotePort ?? 0,
    };
    socket.on("data", (data: Buffer) => {
      socket.pause();
      this.#chunk = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
      for (const reject of this.#writes) reject(new Deno.errors.BrokenPipe("Socket closed"));
      this.#writes.clear();
    });
    socket.on("error", (err: Error) => {
      this.#error = _asDenoError(err);
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunk === undefined) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunk;
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n < chunk.length) {
      this.#chunk = chunk.subarray(n);
    } else {
      this.#chunk = undefined;
      if (!this.#ended) this.#socket.resume();
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#socket.destroyed || !this.#socket.writable) {
      return Promise.reject(new Deno.errors.BrokenPipe("Cannot write: socket is closed"));
    }
    return new Promise((resolve, reject) => {
      this.#writes.add(reject);
      this.#socket.write(p, (err?: Error | null) => {
        this.#writes.delete(reject);
        if (err) reject(_asDenoError(err));
        else resolve(p.length);
      });
    });
  }

  close(): void {
    this.#ended = true;
    this.#chunk = undefined;
    this.#notify();
    if (this.#socket.destroyed) return;
    // A write still in flight means a peer that does not read: cut it off, as on plain TCP.
    if (this.#writes.size > 0) {
      this.#socket.destroy();
      return;
    }
    // close_notify and FIN now; a peer that never closes its side is cut off after a moment.
    this.#socket.end();
    const timer = setTimeout(() => this.#socket.destroy(), CLOSE_WAIT_MS);
    this.#socket.once("close", () => clearTimeout(timer));
  }
}

/** Socket failures that mean the peer went away become the `Deno.errors` a plain connection would throw. */
function _asDenoError(err: Error): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ECONNRESET") return new Deno.errors.ConnectionReset(err.message, { cause: err });
  if (
    code === "EPIPE" || code === "ERR_STREAM_DESTROYED" || code === "ERR_STREAM_WRITE_AFTER_END"
  ) {
    return new Deno.errors.BrokenPipe(err.message, { cause: err });
  }
  return err;
}
