/**
 * Unit tests of `shared/errors.ts`: the error catalogue, `ColmenaError` and `toColmenaError`.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  ColmenaError,
  ERROR_CODES,
  type ErrorCode,
  ERRORS,
  isErrorCode,
  toColmenaError,
} from "../../shared/errors.ts";

Deno.test("ColmenaError carries its code, the catalogue's Spanish message and a name", () => {
  const err = new ColmenaError("NOT_FOUND");
  assert.ok(err instanceof Error);
  assert.ok(err instanceof ColmenaError);
  assert.equal(err.name, "ColmenaError");
  assert.equal(err.code, "NOT_FOUND");
  assert.equal(err.message, "No existe ninguna tarea con ese identificador");
  assert.equal(err.cause, undefined);
});

Deno.test("ColmenaError takes a more precise message and a cause through its options", () => {
  const cause = new Error("socket hang up");
  const err = new ColmenaError("BROKER_UNAVAILABLE", { message: "Sin broker", cause });
  assert.equal(err.message, "Sin broker");
  assert.equal(err.cause, cause);
  assert.equal(err.code, "BROKER_UNAVAILABLE");
});

Deno.test("ColmenaError.retryable follows the catalogue", () => {
  for (const code of ERROR_CODES) {
    assert.equal(new ColmenaError(code).retryable, ERRORS[code].retryable, code);
  }
  assert.equal(new ColmenaError("BROKER_UNAVAILABLE").retryable, true);
  assert.equal(new ColmenaError("OVERLOADED").retryable, true);
});

Deno.test("INVALID_PAYLOAD, UNKNOWN_TASK_TYPE and the other input errors are permanent", () => {
  const permanent: ErrorCode[] = [
    "INVALID_JSON",
    "INVALID_MESSAGE",
    "UNKNOWN_TASK_TYPE",
    "INVALID_PAYLOAD",
    "FRAME_TOO_LARGE",
    "TOO_DEEP",
    "NOT_FOUND",
    "AMBIGUOUS_ID",
  ];
  for (const code of permanent) assert.equal(new ColmenaError(code).retryable, false, code);
});

Deno.test("toWire gives only the code and the message, never the stack or the cause", () => {
  const err = new ColmenaError("INTERNAL", {
    cause: new Error("ECONNREFUSED 127.0.0.1:5672 secret-vendor-text"),
  });
  const wire = err.toWire();
  assert.deepEqual(wire, { code: "INTERNAL", message: "Error interno del servidor" });
  assert.deepEqual(Object.keys(wire).sort(), ["code", "message"]);
  const json = JSON.stringify(wire);
  assert.equal(json.includes("secret-vendor-text"), false);
  assert.equal(json.includes("stack"), false);
  assert.equal(json.includes("at "), false);
});

Deno.test("fromWire rebuilds a known code with the peer's message", () => {
  const err = ColmenaError.fromWire({ code: "TIMEOUT", message: "Tardó demasiado" });
  assert.ok(err instanceof ColmenaError);
  assert.equal(err.code, "TIMEOUT");
  assert.equal(err.message, "Tardó demasiado");
  assert.equal(err.retryable, true);
});

Deno.test("fromWire turns an unknown code into INTERNAL", () => {
  for (const code of ["NOPE", "", "toString", "__proto__", "internal"]) {
    const err = ColmenaError.fromWire({ code, message: "algo" });
    assert.equal(err.code, "INTERNAL", code);
    assert.equal(err.message, "algo");
  }
});

Deno.test("fromWire and toWire round-trip every code", () => {
  for (const code of ERROR_CODES) {
    const wire = new ColmenaError(code).toWire();
    assert.deepEqual(ColmenaError.fromWire(wire).toWire(), wire);
  }
});

Deno.test("isErrorCode accepts the catalogue's codes and nothing inherited", () => {
  assert.equal(isErrorCode("FRAME_TOO_LARGE"), true);
  assert.equal(isErrorCode("frame_too_large"), false);
  assert.equal(isErrorCode("hasOwnProperty"), false);
  assert.deepEqual([...ERROR_CODES].sort(), Object.keys(ERRORS).sort());
});

Deno.test("every catalogue entry has a non-empty message", () => {
  for (const code of ERROR_CODES) {
    assert.ok(ERRORS[code].message.length > 0, code);
  }
});

Deno.test("toColmenaError returns a ColmenaError unchanged", () => {
  const err = new ColmenaError("OVERLOADED");
  assert.equal(toColmenaError(err), err);
});

Deno.test("toColmenaError turns any other throw into INTERNAL with the cause attached", () => {
  const thrown: unknown[] = [new TypeError("boom"), "texto", 42, null, undefined, {
    code: "ECONNRESET",
  }];
  for (const value of thrown) {
    const err = toColmenaError(value);
    assert.ok(err instanceof ColmenaError);
    assert.equal(err.code, "INTERNAL");
    assert.equal(err.message, ERRORS.INTERNAL.message);
    assert.equal(err.cause, value);
  }
});
