/**
 * Principals: who a connection acts for, as far as the server is concerned. A principal is what
 * authentication establishes (a token's name and role); without tokens configured (loopback, zero set-up)
 * every connection is its own `hello` name with the `admin` role, as before authentication existed.
 *
 * Ownership, quotas and idempotency scopes key on {@linkcode Principal.name}; operator-only requests
 * (`dlq`, `workers`) need {@linkcode Principal.role} `admin`.
 *
 * @module
 */

/** What a principal may do: `cliente` sees only its own tasks and uploads; `admin` sees all. */
export type Role = "cliente" | "admin";

/** Who a connection acts for. */
export interface Principal {
  /** The principal's name: a token's name, or the `hello` name when no tokens are configured. */
  readonly name: string;
  /** Its role. */
  readonly role: Role;
  /** The task types it may submit; `undefined` means any. */
  readonly types?: readonly string[] | undefined;
}

/** The principal of a connection on a server without tokens, named by its `hello` (or the default). */
export function localPrincipal(name: string): Principal {
  return { name, role: "admin" };
}

/** Whether `principal` may see or act on something owned by `owner`. */
export function mayAccess(principal: Principal, owner: string): boolean {
  return principal.role === "admin" || principal.name === owner;
}
