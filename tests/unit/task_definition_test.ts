/**
 * Unit tests of `shared/task_definition.ts` and `shared/catalog.ts`: what `defineTask` accepts, and how
 * the catalogue validates a submit (unknown type, schema, limits, files).
 *
 * @module
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { BUILTIN_CATALOG, TaskCatalog } from "../../shared/catalog.ts";
import { defineTask, TaskDefinitionError } from "../../shared/task_definition.ts";
import { TASK_TYPES } from "../../shared/tasks.ts";

const HANDLER = new URL("./nowhere_handler.ts", import.meta.url);

function resumen(overrides: Record<string, unknown> = {}) {
  return defineTask({
    name: "resumen",
    description: "Resume un texto",
    input: z.object({ texto: z.string().min(1) }),
    output: z.object({ frases: z.number().int() }),
    timeoutMs: 5_000,
    limits: { maxPayloadBytes: 64 },
    fileField: "texto",
    handler: HANDLER,
    ...overrides,
  });
}

Deno.test("defineTask keeps the contract and names the handler module's default export", () => {
  const task = resumen();
  assert.equal(task.name, "resumen");
  assert.equal(task.handler.module.href, HANDLER.href);
  assert.equal(task.handler.export, "default");
  assert.equal(task.isolated, false);
  assert.deepEqual(task.limits, { maxPayloadBytes: 64 });
  assert.ok(Object.isFrozen(task));
  const fn = () => ({ frases: 1 });
  assert.equal(task.implement(fn), fn);
});

Deno.test("defineTask refuses unusable declarations with a Spanish message", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ name: "con espacio" }, /nombre no válido/],
    [{ name: "dlq" }, /nombre reservado/],
    [{ description: " " }, /no tiene descripción/],
    [{ input: { type: "object" } }, /esquemas de zod/],
    [{ output: "string" }, /esquemas de zod/],
    [{ timeoutMs: 0 }, /timeoutMs/],
    [{ timeoutMs: 1.5 }, /timeoutMs/],
    [{ limits: { maxPayloadBytes: -1 } }, /maxPayloadBytes/],
    [{ handler: "./resumen_handler.ts" }, /handler: new URL/],
  ];
  for (const [overrides, message] of cases) {
    assert.throws(
      () => resumen(overrides),
      (err: unknown) => err instanceof TaskDefinitionError && message.test(err.message),
      JSON.stringify(overrides),
    );
  }
});

Deno.test("the built-in catalogue lists the built-in types in order, each declared by defineTask", () => {
  assert.deepEqual(BUILTIN_CATALOG.names(), TASK_TYPES);
  for (const definition of BUILTIN_CATALOG.definitions()) {
    assert.ok(TaskCatalog.isBuiltin(definition));
    assert.match(definition.handler.module.pathname, /shared\/tasks\/\w+_handler\.ts$/);
  }
});

Deno.test("a catalogue refuses a name twice and a redefined built-in type", () => {
  assert.throws(
    () => TaskCatalog.withBuiltins([resumen(), resumen()]),
    /«resumen» está definida dos veces/,
  );
  assert.throws(
    () => TaskCatalog.withBuiltins([resumen({ name: "text" })]),
    /«text» redefine una tarea incorporada/,
  );
});

Deno.test("validate answers UNKNOWN_TASK_TYPE, then INVALID_PAYLOAD for the schema", () => {
  const catalog = TaskCatalog.withBuiltins([resumen()]);
  const unknown = catalog.validate({ type: "video", payload: {} });
  assert.ok(!unknown.ok && unknown.error.code === "UNKNOWN_TASK_TYPE");
  const bad = catalog.validate({ type: "resumen", payload: { texto: 5 } });
  assert.ok(!bad.ok && bad.error.code === "INVALID_PAYLOAD");
  assert.match(!bad.ok ? bad.error.message : "", /Datos no válidos para "resumen": texto/);
  const good = catalog.validate({ type: "resumen", payload: { texto: "hola" } });
  assert.ok(good.ok);
  assert.deepEqual(good.ok && good.value.payload, { texto: "hola" });
});

Deno.test("validate refuses a payload over the type's maxPayloadBytes, counting a file's bytes", () => {
  const catalog = TaskCatalog.withBuiltins([resumen()]);
  const big = catalog.validate({ type: "resumen", payload: { texto: "ñ".repeat(40) } });
  assert.ok(!big.ok && big.error.code === "INVALID_PAYLOAD");
  assert.match(!big.ok ? big.error.message : "", /ocupan 92 bytes y el límite del tipo es 64/);
  const withFile = catalog.validate(
    { type: "resumen", payload: { texto: "x" } },
    { field: "texto", bytes: 100 },
  );
  assert.ok(!withFile.ok && /límite del tipo es 64/.test(withFile.error.message));
  assert.ok(catalog.validate({ type: "text", payload: { text: "ñ".repeat(10_000) } }).ok);
});

Deno.test("validate refuses a file for a type that takes none, or in another field", () => {
  const catalog = TaskCatalog.withBuiltins([resumen()]);
  const none = catalog.validate({ type: "numbers", payload: { numbers: [1] } }, {
    field: "numbers",
    bytes: 1,
  });
  assert.ok(!none.ok && /no aceptan ficheros/.test(none.error.message));
  const other = catalog.validate({ type: "resumen", payload: { texto: "x" } }, {
    field: "otro",
    bytes: 1,
  });
  assert.ok(!other.ok && /va en el campo "texto"/.test(other.error.message));
});
