/**
 * `hello`: who the client is and who it acts for. Without tokens the connection acts for its `hello` name
 * with the `admin` role (loopback, zero set-up). With tokens (`--tokens`) it acts for its token's principal;
 * a missing or wrong token gets `UNAUTHORIZED` and a close, after a wait that grows with the failures of its
 * address. A principal already established by authentication (an earlier token, or a TLS client
 * certificate) is never replaced by a later `hello`.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import type { Request } from "../shared/protocol.ts";
import type { ClientConnection } from "./connection.ts";
import { localPrincipal, type Principal } from "./principal.ts";
import type { FailureThrottle, TokenRegistry } from "./tokens.ts";

/** What `hello` needs: the accepted tokens (none: no authentication) and the failure slowdown. */
export interface HelloDeps {
  readonly tokens: TokenRegistry | undefined;
  readonly throttle: FailureThrottle;
  /** Without tokens, who a connection acts for, given its name. @defaultValue {@linkcode localPrincipal} */
  readonly principalFor?: ((name: string) => Principal) | undefined;
}

/** The address part of `host:port`, for the failure slowdown. */
function _address(remote: string): string {
  const at = remote.lastIndexOf(":");
  return at === -1 ? remote : remote.slice(0, at);
}

/**
 * Takes a `hello`: sets the client's identity and principal and returns `true` for the caller to answer
 * `welcome` at once (requests pipelined after a good `hello` find it authenticated, and are answered after
 * the `welcome`), or returns `false` and refuses it (`UNAUTHORIZED`, then the connection closes) after the
 * address's wait; frames that come meanwhile are ignored.
 */
export function greet(
  client: ClientConnection,
  request: Extract<Request, { type: "hello" }>,
  { tokens, throttle, principalFor }: HelloDeps,
): boolean {
  // A connection whose kind its transport fixes (the browser bridge: `web`) keeps it, whatever it says.
  if (request.client) {
    client.client = { name: request.client.name, kind: client.fixedKind ?? request.client.kind };
  }
  if (client.authenticated) return true;
  if (tokens === undefined) {
    if (request.client) client.principal = (principalFor ?? localPrincipal)(request.client.name);
    return true;
  }
  const principal = tokens.verify(request.token);
  if (principal !== undefined) {
    client.principal = principal;
    client.authenticated = true;
    return true;
  }
  client.refusing = true;
  const waitMs = throttle.failed(_address(client.remote));
  log.warn(
    `Token ${request.token === undefined ? "ausente" : "no válido"} en la conexión ${client.id} ` +
      `(${client.remote})`,
  );
  const error = new ColmenaError("UNAUTHORIZED", {
    message: request.token === undefined
      ? "Este servidor exige un token en el hello (--token o COLMENA_TOKEN); la conexión se cierra"
      : "El token no es válido; la conexión se cierra",
  });
  if (waitMs === 0) client.refuse(request.id, error);
  else setTimeout(() => client.refuse(request.id, error), waitMs);
  return false;
}
