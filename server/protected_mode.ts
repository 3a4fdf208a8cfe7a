/**
 * Protected mode: a server without tokens serves only loopback. Bound to any other address it refuses to
 * start, saying how to configure tokens, unless `--inseguro`, which is warned at every start.
 *
 * @module
 */
import * as log from "../shared/log.ts";

/** Whether `host` is a loopback name or address: only there may a server run without tokens. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

/** A server that must not start as configured: its Spanish message says why and how to fix it (exit 2). */
export class UnsafeBindError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnsafeBindError";
  }
}

/**
 * Checks a server without tokens about to listen on `host`: nothing on loopback; a warning with `inseguro`;
 * otherwise throws {@linkcode UnsafeBindError}.
 */
export function checkUnauthenticatedBind(host: string, inseguro: boolean): void {
  if (isLoopback(host)) return;
  if (!inseguro) {
    throw new UnsafeBindError(
      `El servidor escucharía en ${host}, fuera de loopback, sin autenticación. ` +
        "Cree tokens con «deno task cliente token crear <nombre> --tokens data/tokens.jsonl» y " +
        "arranque con --tokens data/tokens.jsonl (o COLMENA_TOKENS_FILE); o escuche en 127.0.0.1. " +
        "Solo en una red de confianza: --inseguro.",
    );
  }
  log.warn(
    `Modo inseguro: el servidor escucha en ${host} sin autenticación; cualquiera que llegue al ` +
      "puerto puede enviar, ver y cancelar las tareas de todos. Configure --tokens.",
  );
}
