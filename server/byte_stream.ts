/**
 * `ByteStream`: the narrow view of a client socket that a `ClientConnection` needs. A plain `Deno.Conn`
 * from `Deno.listen` already is one (the plain TCP path uses it as it is); TLS sockets are adapted to it
 * (`tls_listener.ts`).
 *
 * @module
 */

/** A duplex byte stream: what the server reads from and writes to a client. */
export interface ByteStream {
  /** Reads into `p`; resolves with the count read, or `null` at the end of the peer's input. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p` (at least one byte); resolves with how many were taken once they are sent. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the socket at once. */
  close(): void;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
}
