/**
 * Admission: what a frame goes through before it is dispatched. In order: the line cap (`FRAME_TOO_LARGE`),
 * blank lines (ignored), decoding (`INVALID_JSON`/`INVALID_MESSAGE`), the connection's rate limit
 * (`RATE_LIMITED`) and its unanswered-request slots (`maxPending`, `OVERLOADED`). An admitted request holds a
 * slot until it is answered; an error it throws is normalised once here and answered with its code.
 *
 * On a server that requires authentication (tokens configured), a connection that has not authenticated
 * gets only `hello` served: a line over the small pre-authentication cap, undecodable input or any other
 * request is answered once and the connection is closed (`FRAME_TOO_LARGE`, the decoding code, or
 * `UNAUTHORIZED`).
 *
 * @module
 */
import { ColmenaError, toColmenaError } from "../shared/errors.ts";
import type { Framed } from "../shared/framing.ts";
import * as log from "../shared/log.ts";
import { decodeRequest, type Request } from "../shared/protocol.ts";
import type { ClientConnection } from "./connection.ts";

/** Request types answered before their handler returns: they take no `maxPending` slot. */
const ANSWERED_AT_ONCE: ReadonlySet<Request["type"]> = new Set(["hello", "ping", "workers"]);

/** The limits admission enforces, from the server's configuration. */
export interface AdmissionLimits {
  readonly maxLineBytes: number;
  readonly maxJsonDepth: number;
  /** Requests per second on one connection. */
  readonly rateLimit: number;
  /** Requests a connection may save up. */
  readonly rateBurst: number;
  /** Requests a connection may have unanswered at once. */
  readonly maxPending: number;
}

/**
 * Admits one frame of `client` and hands its request to `dispatch`, or answers the error that stops it. The
 * request's slot is released when `dispatch` settles; a rejection is answered as an `error` frame.
 */
export function admitFrame(
  client: ClientConnection,
  framed: Framed,
  { limits, dispatch }: {
    limits: AdmissionLimits;
    dispatch: (client: ClientConnection, request: Request) => Promise<void>;
  },
): void {
  if (client.refusing) return;
  if (client.awaitingAuth) {
    if (framed.kind === "too_large") {
      client.refuse(
        null,
        new ColmenaError("FRAME_TOO_LARGE", {
          message:
            `La línea (${framed.bytes} bytes) supera el máximo de ${client.lineCap} antes del hello`,
        }),
      );
      return;
    }
    if (framed.bytes.length === 0) return;
    const decoded = decodeRequest(framed.bytes, { maxDepth: limits.maxJsonDepth });
    if (!decoded.ok) return client.refuse(decoded.id, decoded.error);
    if (decoded.value.type !== "hello") {
      return client.refuse(
        decoded.value.id,
        new ColmenaError("UNAUTHORIZED", {
          message: "Primero hay que enviar hello con un token válido; la conexión se cierra",
        }),
      );
    }
  }
  if (framed.kind === "too_large") {
    client.sendError(
      null,
      new ColmenaError("FRAME_TOO_LARGE", {
        message: `La línea (${framed.bytes} bytes) supera el máximo de ${limits.maxLineBytes}`,
      }),
    );
    return;
  }
  if (framed.bytes.length === 0) return; // blank lines are no-ops (they do not reset the idle timer)
  const decoded = decodeRequest(framed.bytes, { maxDepth: limits.maxJsonDepth });
  if (!decoded.ok) {
    client.sendError(decoded.id, decoded.error);
    return;
  }
  const request = decoded.value;
  // A `submit_many` costs one request per task: a batch is no way around the rate limit.
  const cost = request.type === "submit_many" ? request.tasks.length : 1;
  if (!client.takeToken(limits.rateLimit, limits.rateBurst, cost)) {
    client.sendError(
      request.id,
      new ColmenaError("RATE_LIMITED", {
        message:
          `Más de ${limits.rateLimit} peticiones por segundo en esta conexión; espere un poco`,
      }),
    );
    return;
  }
  // Requests answered on the spot need no slot; the rest hold one until answered.
  const slot = !ANSWERED_AT_ONCE.has(request.type);
  if (slot && client.pending >= limits.maxPending) {
    client.sendError(
      request.id,
      new ColmenaError("OVERLOADED", {
        message:
          `Demasiadas peticiones sin responder en esta conexión (máximo ${limits.maxPending})`,
      }),
    );
    return;
  }
  // Its line's bytes count until it is answered: past `maxPendingBytes` the connection stops reading.
  const bytes = slot ? framed.bytes.length : 0;
  if (slot) client.beginRequest(bytes);
  dispatch(client, request).catch((err: unknown) => {
    const error = toColmenaError(err);
    if (error.code === "INTERNAL") log.error("Error interno atendiendo una petición", err);
    client.sendError(request.id, error);
  }).finally(() => {
    if (slot) client.endRequest(bytes);
  });
}
