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

/**
 * The Spanish message of a TLS failure with `host:port` (an untrusted or unfitting server certificate, a
 * client certificate the server requires or refuses, a peer that does not speak TLS), or `undefined` when
 * `cause` is not a TLS failure.
 */
export function describeTlsFailure(
  cause: unknown,
  server: { readonly host: string; readonly port: number },
  options: {
    /** Whether the client presented a certificate. */
    readonly clientCert?: boolean;
    /** Whether the server has not replied yet: a cut then is most likely about the client certificate. */
    readonly beforeReply?: boolean;
  } = {},
): string | undefined {
  const text = cause instanceof Error ? cause.message : "";
  const { host, port } = server;
  const cut = /UnexpectedEof|close_notify/i.test(text) ||
    (options.beforeReply === true && cause instanceof Deno.errors.ConnectionReset);
  if (cut && options.beforeReply === true && options.clientCert !== true) {
    return `El servidor ${host}:${port} cortó la conexión TLS antes de responder: ¿exige un ` +
      "certificado de cliente? Indique --cert y --key (COLMENA_CERT, COLMENA_KEY)";
  }
  if (/UnknownIssuer|BadSignature|unable to (get|verify)/i.test(text)) {
    return `El certificado del servidor ${host}:${port} no está firmado por una CA de confianza: ` +
      "indique la CA que lo firmó con --ca (COLMENA_CA)";
  }
  if (/NotValidForName|not valid for name/i.test(text)) {
    return `El certificado del servidor no vale para el nombre «${host}»: conecte con el nombre ` +
      "que figura en el certificado";
  }
  if (/Expired|NotValidYet/i.test(text)) {
    return `El certificado del servidor ${host}:${port} ha caducado o aún no es válido`;
  }
  if (/CertificateRequired|HandshakeFailure.*certificate/i.test(text)) {
    return `El servidor ${host}:${port} exige un certificado de cliente (TLS mutuo): indique ` +
      "--cert y --key (COLMENA_CERT, COLMENA_KEY)";
  }
  if (
    /alert: (BadCertificate|UnknownCA|DecryptError|CertificateUnknown|AccessDenied)/i.test(text)
  ) {
    return `El servidor ${host}:${port} rechazó el certificado de cliente (--cert): no es de su CA ` +
      "de clientes";
  }
  if (cut) {
    return `El servidor ${host}:${port} cortó la conexión TLS antes de responder` +
      (options.clientCert ? ": probablemente rechazó el certificado de cliente (--cert)" : "");
  }
  if (/alert: ProtocolVersion|PeerIncompatible/i.test(text)) {
    return `El servidor ${host}:${port} no acepta ninguna versión de TLS de este cliente`;
  }
  if (/corrupt message|InvalidContentType|wrong version number|InvalidMessage/i.test(text)) {
    return `El servidor ${host}:${port} no habla TLS: quite --tls, o arránquelo con --tls-cert y ` +
      "--tls-key";
  }
  if (/fatal alert|tls|handshake|certificate/i.test(text)) {
    return `Falló la conexión TLS con ${host}:${port}`;
  }
  return undefined;
}
