/**
 * Error codes of the colmena wire protocol and the one domain error class.
 *
 * Every error that crosses a process boundary (TCP reply, result message) is carried as a code from
 * {@linkcode ERRORS} plus its Spanish message. Stacks and vendor texts never reach the wire; they stay in the
 * logs through `cause`.
 *
 * @module
 */

/**
 * The catalogue of error codes: code → Spanish message and whether retrying the same request can succeed.
 *
 * - `retryable: true` — a transient condition (broker down, overload); the same request may succeed later.
 * - `retryable: false` — permanent: resending the same input gives the same error, so it is never retried.
 *
 * `BROKER_UNAVAILABLE` on a `submit` means the task was not queued; `PUBLISH_UNCONFIRMED` means the outcome
 * is unknown (the message left, its confirm was lost for the whole retry window): a resubmit with the same
 * idempotency key is safe, one without may run the task twice.
 */
export const ERRORS = {
  INVALID_JSON: {
    message: "La línea no es JSON válido en UTF-8",
    retryable: false,
  },
  INVALID_MESSAGE: {
    message: "El mensaje no cumple el protocolo",
    retryable: false,
  },
  UNKNOWN_TASK_TYPE: {
    message: "Tipo de tarea desconocido",
    retryable: false,
  },
  INVALID_PAYLOAD: {
    message: "Los datos de la tarea no son válidos para su tipo",
    retryable: false,
  },
  FRAME_TOO_LARGE: {
    message: "La línea supera el tamaño máximo permitido",
    retryable: false,
  },
  TOO_DEEP: {
    message: "El JSON está anidado a demasiada profundidad",
    retryable: false,
  },
  NOT_FOUND: {
    message: "No existe ninguna tarea con ese identificador",
    retryable: false,
  },
  /**
   * A shortened task id (a prefix of at least 8 characters) matches several tasks; the message says how
   * many. Resending it gives the same answer: the client must send a longer prefix or the full id.
   */
  AMBIGUOUS_ID: {
    message: "El identificador abreviado coincide con varias tareas; escriba más caracteres",
    retryable: false,
  },
  /**
   * The connection has not identified itself: a server with tokens (`--tokens`) got a request before a
   * valid `hello`, or a `hello` with a missing or wrong token, or none in time. The connection is closed.
   */
  UNAUTHORIZED: {
    message: "Se necesita un token válido en el hello; la conexión se cierra",
    retryable: false,
  },
  /**
   * The caller is identified but may not do this: `dlq` and `workers` need the `admin` role, and a token
   * limited to some task types cannot submit others.
   */
  FORBIDDEN: {
    message: "Su token no permite esta operación",
    retryable: false,
  },
  BROKER_UNAVAILABLE: {
    message: "El broker de mensajes no está disponible; inténtelo de nuevo",
    retryable: true,
  },
  BROKER_BLOCKED: {
    message:
      "RabbitMQ no admite publicaciones ahora (alarma de memoria o disco); inténtelo de nuevo",
    retryable: true,
  },
  PUBLISH_UNCONFIRMED: {
    message:
      "El broker no confirmó la tarea a tiempo: puede haber quedado en cola o no; reenvíela con la misma clave de idempotencia",
    retryable: true,
  },
  BLOB_UNAVAILABLE: {
    message: "El almacén de objetos no está disponible; inténtelo de nuevo",
    retryable: true,
  },
  STORE_UNAVAILABLE: {
    message: "El almacén de tareas no está disponible; inténtelo de nuevo",
    retryable: true,
  },
  OVERLOADED: {
    message: "El servidor está sobrecargado; inténtelo de nuevo",
    retryable: true,
  },
  RATE_LIMITED: {
    message: "Demasiadas peticiones por segundo en esta conexión; espere un poco",
    retryable: true,
  },
  /**
   * A quota of the caller's principal is used up for now (tasks in flight, submits per second, uploads or
   * uploaded bytes per hour) or the connection holds too many open uploads; the message says which. Nothing
   * was queued or stored: the same request may succeed once tasks finish or the interval passes.
   */
  QUOTA_EXCEEDED: {
    message: "Se superó una cuota; espere a que terminen tareas o pase el intervalo",
    retryable: true,
  },
  /**
   * The request asks for more than the caller's principal may ever ask (a priority above its highest, or
   * attempts × timeout above its budget); the message says which limit. Resending it gives the same answer.
   */
  QUOTA_LIMIT: {
    message: "La petición supera un límite de su cuota",
    retryable: false,
  },
  /**
   * The task's handler went over the memory cap of its thread (`--memoria-tarea-mb`); its thread was ended
   * and the worker goes on. The same input needs the same memory, so it is not retried.
   */
  MEMORY_EXCEEDED: {
    message: "La tarea superó el límite de memoria de su hilo",
    retryable: false,
  },
  IDLE_TIMEOUT: {
    message: "La conexión estuvo inactiva demasiado tiempo",
    retryable: true,
  },
  CANCELLED: {
    message: "La tarea fue cancelada",
    retryable: false,
  },
  SLOW_CONSUMER: {
    message: "El cliente no lee sus respuestas; se cierra la conexión",
    retryable: true,
  },
  SHUTTING_DOWN: {
    message: "El servidor se está apagando",
    retryable: true,
  },
  TASK_FAILED: {
    message: "La tarea falló durante su ejecución",
    retryable: true,
  },
  TIMEOUT: {
    message: "La tarea superó su tiempo máximo",
    retryable: true,
  },
  CONNECTION_CLOSED: {
    message: "La conexión con el servidor se cerró",
    retryable: true,
  },
  /**
   * Client side only, never on the wire: the TLS connection with the server could not be set up (an
   * untrusted server certificate, a client certificate missing or refused, a server that does not speak
   * TLS, a PEM file that cannot be read). The message says which; retrying the same settings fails again.
   */
  TLS_FAILED: {
    message: "No se pudo establecer la conexión TLS con el servidor",
    retryable: false,
  },
  INTERNAL: {
    message: "Error interno del servidor",
    retryable: true,
  },
} as const satisfies Record<string, { message: string; retryable: boolean }>;

/** One of the wire error codes. */
export type ErrorCode = keyof typeof ERRORS;

/** All error codes, for schemas and docs. */
export const ERROR_CODES = Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]];

/** The wire shape of an error: a code and a Spanish message. */
export interface WireError {
  code: ErrorCode;
  message: string;
}

/** Options of {@linkcode ColmenaError}. */
export interface ColmenaErrorOptions extends ErrorOptions {
  /** A Spanish message more precise than the catalogue's; defaults to the catalogue's message. */
  message?: string;
}

/**
 * The domain error of colmena: a typed {@linkcode ErrorCode} and a Spanish message fit for the wire.
 *
 * @example
 * ```ts
 * try {
 *   await client.run("text", { text: "hola" });
 * } catch (err) {
 *   if (err instanceof ColmenaError && err.code === "BROKER_UNAVAILABLE") {
 *     // try again later
 *   }
 * }
 * ```
 */
export class ColmenaError extends Error {
  /** The wire code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, options: ColmenaErrorOptions = {}) {
    super(options.message ?? ERRORS[code].message, options);
    this.name = "ColmenaError";
    this.code = code;
  }

  /** Whether retrying the same request may succeed. */
  get retryable(): boolean {
    return ERRORS[this.code].retryable;
  }

  /** The wire shape: code and Spanish message, never the stack or the cause. */
  toWire(): WireError {
    return { code: this.code, message: this.message };
  }

  /**
   * What `JSON.stringify` writes: name, code, Spanish message and whether retrying may succeed (an
   * `Error`'s own fields are not enumerable, so without this it would write `{}`). Never the stack or cause.
   */
  toJSON(): { name: string; code: ErrorCode; message: string; retryable: boolean } {
    return { name: this.name, code: this.code, message: this.message, retryable: this.retryable };
  }

  /** Rebuilds the error a peer sent; an unknown code becomes `INTERNAL`. */
  static fromWire(frame: { code: string; message: string }): ColmenaError {
    const code = isErrorCode(frame.code) ? frame.code : "INTERNAL";
    return new ColmenaError(code, { message: frame.message });
  }
}

/** Whether a string is one of the known error codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

/** Normalises anything thrown into a {@linkcode ColmenaError}; unknown throws become `INTERNAL` with the cause. */
export function toColmenaError(err: unknown): ColmenaError {
  if (err instanceof ColmenaError) return err;
  return new ColmenaError("INTERNAL", { cause: err });
}
