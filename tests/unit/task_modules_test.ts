/**
 * Unit tests of `shared/task_modules.ts`: loading a user's task modules, and every way one can fail to
 * load, each with a Spanish message that names the module.
 *
 * @module
 */
import assert from "node:assert/strict";
import { loadCatalog, TaskModuleError } from "../../shared/task_modules.ts";
import { registerDefinitions } from "../../worker/handlers.ts";
import { TaskRegistry } from "../../worker/registry.ts";
import { CONTRACTS, writeUserTasks } from "../_helpers/user_tasks.ts";

const MOD = new URL("../../mod.ts", import.meta.url).href;

Deno.test("loadCatalog adds a module's task types to the built-in ones", async () => {
  await using tasks = await writeUserTasks();
  const { catalog, modules } = await loadCatalog([tasks.path]);
  assert.deepEqual(catalog.names().slice(-2), ["resumen", "factorial"]);
  assert.equal(modules[0]?.definitions.length, 2);
  assert.ok(catalog.has("text"));
});

Deno.test("a relative task module path is read from the given folder", async () => {
  await using tasks = await writeUserTasks();
  const { catalog } = await loadCatalog(["mis_tareas.ts"], tasks.dir);
  assert.ok(catalog.has("resumen"));
});

Deno.test("the worker registers a module's handlers, the isolated one in a thread", async () => {
  await using tasks = await writeUserTasks();
  const { catalog } = await loadCatalog([tasks.path]);
  await using registry = await registerDefinitions(new TaskRegistry(), catalog.definitions());
  assert.equal(registry.get("factorial")?.isolated, true);
  const lines: string[] = [];
  const context = {
    signal: new AbortController().signal,
    taskId: "t-1",
    attempt: 2,
    log: { info: (m: string) => lines.push(m), warn: () => {}, error: () => {} },
  };
  assert.deepEqual(
    await registry.get("resumen")?.handler({ texto: "Hola. ¿Qué tal?", idioma: "es" }, context),
    { frases: 2, palabras: 3, idioma: "es" },
  );
  assert.match(lines[0] ?? "", /intento 2, hilo principal: true/);
  assert.deepEqual(await registry.get("factorial")?.handler({ n: 20 }, context), {
    digitos: 19,
    valor: "2432902008176640000",
  });
});

async function loadFailure(files: Record<string, string>, path = "mis_tareas.ts"): Promise<string> {
  await using tasks = await writeUserTasks(files);
  try {
    await loadCatalog([`${tasks.dir}/${path}`]);
  } catch (err) {
    assert.ok(err instanceof TaskModuleError, String(err));
    return err.message;
  }
  throw new Error("the module loaded");
}

Deno.test("a missing task module is named", async () => {
  assert.match(
    await loadFailure({}, "no_existe.ts"),
    /No se encuentra el módulo de tareas .*no_existe\.ts/,
  );
});

Deno.test("a task module that does not compile says why", async () => {
  assert.match(
    await loadFailure({ "mis_tareas.ts": "export default [;" }),
    /No se pudo cargar el módulo de tareas .*mis_tareas\.ts/,
  );
});

Deno.test("a task module without definitions is refused", async () => {
  assert.match(
    await loadFailure({ "mis_tareas.ts": "export const x = 1;" }),
    /no define tareas: debe hacer «export default \[tarea1, tarea2\]»/,
  );
  assert.match(
    await loadFailure({ "mis_tareas.ts": "export default [];" }),
    /no define tareas/,
  );
  assert.match(
    await loadFailure({ "mis_tareas.ts": "export default [{ name: 'x' }];" }),
    /el elemento 1 de su exportación por defecto no es una tarea de defineTask/,
  );
});

Deno.test("a task module whose schemas are not zod is refused", async () => {
  const text = `import { defineTask } from "${MOD}";
export default [defineTask({ name: "mala", description: "d", input: { type: "object" },
  output: { type: "object" }, timeoutMs: 10, handler: new URL("./h.ts", import.meta.url) })];`;
  assert.match(await loadFailure({ "mis_tareas.ts": text }), /«mala» no tiene esquemas de zod/);
});

Deno.test("a task module that redefines a built-in type or repeats a name is refused", async () => {
  const builtin = CONTRACTS.replace('name: "resumen"', 'name: "text"');
  assert.match(
    await loadFailure({ "mis_tareas.ts": builtin }),
    /«text» redefine una tarea incorporada/,
  );
  const twice = CONTRACTS.replace('name: "factorial"', 'name: "resumen"');
  assert.match(await loadFailure({ "mis_tareas.ts": twice }), /«resumen» está definida dos veces/);
});

Deno.test("a handler module that does not export a handler stops the worker's registration", async () => {
  await using tasks = await writeUserTasks({ "resumen_handler.ts": "export const nada = 1;" });
  const { catalog } = await loadCatalog([tasks.path]);
  await assert.rejects(
    registerDefinitions(new TaskRegistry(), catalog.definitions()),
    /El handler de la tarea «resumen» no es una función: .*resumen_handler\.ts debe exportar por defecto/,
  );
});
