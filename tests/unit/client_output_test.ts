/**
 * Unit tests of how `cliente` reports failures: one `CÓDIGO: mensaje` format, and connection failures
 * named for what they are.
 *
 * @module
 */
import assert from "node:assert/strict";
import { connectFailureKind, describeConnectFailure } from "../../client/connect_error.ts";
import { describeFailure, describeMissingTask, isConnectFailure } from "../../client/output.ts";
import { ColmenaError } from "../../shared/errors.ts";

const SERVER = { host: "srv", port: 8888 };

function _dialFailure(cause: Error): ColmenaError {
  return new ColmenaError("CONNECTION_CLOSED", {
    message: describeConnectFailure(cause, SERVER),
    cause,
  });
}

Deno.test("connectFailureKind tells a name that does not resolve from a refused connection", () => {
  const dns = new Error("failed to lookup address information: Name or service not known");
  assert.equal(connectFailureKind(dns), "name");
  assert.equal(connectFailureKind(new Deno.errors.NotFound("x")), "name");
  assert.equal(connectFailureKind(new Deno.errors.ConnectionRefused("x")), "refused");
  assert.equal(connectFailureKind(new Deno.errors.TimedOut("x")), "timeout");
  assert.equal(connectFailureKind(new Error("something else")), "other");
});

Deno.test("describeFailure names an unresolvable host and a refused host:port, with the code", () => {
  const dns = _dialFailure(
    new Error("failed to lookup address information: Name or service not known"),
  );
  assert.ok(isConnectFailure(dns));
  assert.equal(
    describeFailure(dns, SERVER),
    "CONNECTION_CLOSED: No se puede resolver el nombre «srv». Compruebe el nombre en --host o COLMENA_HOST",
  );
  const refused = _dialFailure(
    new Deno.errors.ConnectionRefused("Connection refused (os error 111)"),
  );
  assert.ok(isConnectFailure(refused));
  assert.equal(
    describeFailure(refused, SERVER),
    "CONNECTION_CLOSED: Conexión rechazada en srv:8888: ningún servidor escucha en ese puerto. " +
      "¿Está en marcha? Arránquelo con: deno task -q servidor --host srv",
  );
});

Deno.test("describeFailure shows every other error as CÓDIGO: mensaje", () => {
  assert.equal(
    describeFailure(new ColmenaError("OVERLOADED"), SERVER),
    "OVERLOADED: El servidor está sobrecargado; inténtelo de nuevo",
  );
  assert.equal(
    describeFailure(new ColmenaError("CONNECTION_CLOSED"), SERVER),
    "CONNECTION_CLOSED: La conexión con el servidor se cerró (srv:8888). " +
      "Compruebe que el servidor sigue en marcha",
  );
  assert.equal(
    describeMissingTask("abc"),
    "NOT_FOUND: No existe ninguna tarea con el id «abc»",
  );
});
