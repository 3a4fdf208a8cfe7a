/**
 * Why dialling a server failed, in Spanish: a host name that does not resolve, a refused connection, a
 * timeout, or anything else.
 *
 * @module
 */

/** What kind of failure stopped a connection attempt. */
export type ConnectFailureKind = "name" | "refused" | "timeout" | "other";

/**
 * Texts of the resolver failures Deno reports as a plain `Error` (2.9.6: `failed to lookup address
 * information: Name or service not known`), on Linux, macOS and Windows.
 */
const NAME_FAILURE =
  /failed to lookup address|name or service not known|nodename nor servname|no address associated|temporary failure in name resolution|no such host/i;

/** Classifies what `Deno.connect` threw. */
export function connectFailureKind(cause: unknown): ConnectFailureKind {
  if (cause instanceof Deno.errors.ConnectionRefused) return "refused";
  if (cause instanceof Deno.errors.TimedOut) return "timeout";
  if (cause instanceof Deno.errors.NotFound) return "name";
  if (cause instanceof Error && NAME_FAILURE.test(cause.message)) return "name";
  return "other";
}

/** The Spanish message of a failed connection attempt to `host:port`. */
export function describeConnectFailure(
  cause: unknown,
  server: { readonly host: string; readonly port: number },
): string {
  const { host, port } = server;
  switch (connectFailureKind(cause)) {
    case "name":
      return `No se puede resolver el nombre «${host}»`;
    case "refused":
      return `Conexión rechazada en ${host}:${port}: ningún servidor escucha en ese puerto`;
    case "timeout":
      return `Se agotó el tiempo al conectar con ${host}:${port}`;
    case "other":
      return `No se puede conectar con el servidor en ${host}:${port}`;
  }
}
