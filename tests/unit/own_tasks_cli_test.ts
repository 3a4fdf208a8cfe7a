/**
 * Unit tests of what the command line does with a user's task types: `--tareas`, `--solo` and
 * `COLMENA_TAREAS` in the configuration, `enviar <tipo> --datos`, the menu's form built from a schema, the
 * output of `tipos`, and the launcher that grants read access to task modules.
 *
 * @module
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { parseFileTaskArgs, parseTaskArgs, toTaskType } from "../../client/args.ts";
import { formatOutput } from "../../client/format.ts";
import { menuText, parseMenuChoice } from "../../client/menu.ts";
import { formFields, payloadFrom } from "../../client/schema_form.ts";
import { describeTaskType } from "../../client/types_command.ts";
import { makeTask, simulatedTypes, verifyOutput } from "../../client/workload.ts";
import { taskModulePaths, withReadAccess } from "../../scripts/with_task_modules.ts";
import { TaskCatalog } from "../../shared/catalog.ts";
import { loadConfig } from "../../shared/config.ts";
import { defineTask } from "../../shared/task_definition.ts";
import { TaskClient } from "../../client/task_client.ts";

const informe = defineTask({
  name: "informe",
  description: "Informe de ventas",
  input: z.object({
    region: z.string().min(1).describe("Región"),
    anio: z.number().int().min(2000),
    detalle: z.boolean().default(false),
    importes: z.array(z.number()).optional(),
  }),
  output: z.object({ total: z.number() }),
  timeoutMs: 1_000,
  handler: new URL("./informe_handler.ts", import.meta.url),
});
const catalog = TaskCatalog.withBuiltins([informe]);

Deno.test("--tareas repeats, splits at commas, and COLMENA_TAREAS is its comma list", () => {
  const flags = loadConfig("servidor", {
    args: ["--tareas", "a.ts", "--tareas", "b.ts,c.ts"],
    env: { COLMENA_TAREAS: "x.ts" },
  });
  assert.deepEqual(flags.tareas, ["a.ts", "b.ts", "c.ts"]);
  const env = loadConfig("worker", { args: ["w1"], env: { COLMENA_TAREAS: "x.ts, y.ts" } });
  assert.deepEqual(env.tareas, ["x.ts", "y.ts"]);
  assert.deepEqual(loadConfig("cliente", { args: [], env: {} }).tareas, []);
});

Deno.test("--solo is a worker's list of task types; simular's count moved to --num-tareas", () => {
  const worker = loadConfig("worker", { args: ["w1", "--solo", "resumen,echo"], env: {} });
  assert.deepEqual(worker.solo, ["resumen", "echo"]);
  assert.equal(loadConfig("worker", { args: [], env: {} }).solo, undefined);
  const client = loadConfig("cliente", { args: ["--num-tareas", "50"], env: {} });
  assert.equal(client.numTareas, 50);
});

Deno.test("enviar <tipo> --datos takes the payload as JSON, for any type", () => {
  const own = parseTaskArgs("informe", [], { catalog, datos: '{"region":"norte","anio":2024}' });
  assert.deepEqual(own, {
    ok: true,
    value: { type: "informe", payload: { region: "norte", anio: 2024 } },
  });
  const builtin = parseTaskArgs("numbers", [], { catalog, datos: '{"numbers":[1,2]}' });
  assert.ok(builtin.ok);
  const broken = parseTaskArgs("informe", [], { catalog, datos: "{region" });
  assert.ok(!broken.ok && /--datos no es JSON válido/.test(broken.message));
  const extra = parseTaskArgs("informe", ["x"], { catalog, datos: "{}" });
  assert.ok(!extra.ok && /Con --datos no van más argumentos/.test(extra.message));
});

Deno.test("a type without its own argument parser asks for --datos", () => {
  const parsed = parseTaskArgs("informe", ["norte"], { catalog });
  assert.ok(!parsed.ok);
  assert.match(parsed.message, /se envían con --datos/);
  const builtin = parseTaskArgs("text", ["hola", "mundo"], { catalog });
  assert.deepEqual(builtin, { ok: true, value: { type: "text", payload: { text: "hola mundo" } } });
});

Deno.test("--archivo works only for types with a file field", () => {
  const refused = parseFileTaskArgs("informe", [], { catalog });
  assert.ok(
    !refused.ok && /--archivo solo sirve con texto y hash, no con informe/.test(refused.message),
  );
  assert.deepEqual(parseFileTaskArgs("hash", ["7"], { catalog }), {
    ok: true,
    value: { type: "hash", field: "data", payload: { iterations: 7 } },
  });
});

Deno.test("task names resolve by wire name, Spanish label or alias", () => {
  assert.equal(toTaskType("informe", catalog), "informe");
  assert.equal(toTaskType("Números", catalog), "numbers");
  assert.equal(toTaskType("esperar", catalog), "sleep");
  assert.equal(toTaskType("video", catalog), undefined);
});

Deno.test("the menu offers the loaded task types before the other actions", () => {
  const text = menuText(catalog);
  assert.match(text, / 6\) informe {4}Informe de ventas/);
  assert.match(text, / 7\) estado/);
  assert.equal(parseMenuChoice("6", catalog), "informe");
  assert.equal(parseMenuChoice("informe", catalog), "informe");
  assert.equal(parseMenuChoice("7", catalog), "status");
});

Deno.test("the menu's form asks one question per field and checks each answer", () => {
  const fields = formFields(informe.input);
  const choice = formFields(z.object({ idioma: z.enum(["es", "en"]).default("es") }))[0]!;
  assert.equal(choice.question, 'idioma (es/en, opcional) ["es"]:');
  assert.deepEqual(fields.map((f) => f.question), [
    "Región (texto):",
    "anio (entero):",
    "detalle (sí/no, opcional) [false]:",
    "importes (números separados por espacios, opcional):",
  ]);
  const [region, anio, detalle, importes] = fields;
  assert.ok(!region!.read("").ok);
  assert.deepEqual(region!.read("norte"), { ok: true, value: "norte" });
  const early = anio!.read("1999");
  assert.ok(!early.ok && /anio|2000|>=/.test(early.message));
  assert.ok(!anio!.read("dos mil").ok);
  assert.match(early.ok ? "" : early.message, /^anio: /);
  assert.deepEqual(detalle!.read(""), { ok: true, value: undefined });
  assert.deepEqual(detalle!.read("sí"), { ok: true, value: true });
  assert.deepEqual(importes!.read("1, 2.5 3"), { ok: true, value: [1, 2.5, 3] });
  assert.deepEqual(payloadFrom(fields, ["norte", 2024, undefined, [1]]), {
    region: "norte",
    anio: 2024,
    importes: [1],
  });
});

Deno.test("a type whose input is not an object gets one JSON question", () => {
  const fields = formFields(z.array(z.number()));
  assert.equal(fields.length, 1);
  assert.deepEqual(payloadFrom(fields, [[1, 2]]), [1, 2]);
});

Deno.test("tipos describes a type with its input and output as JSON Schema", () => {
  const described = describeTaskType(informe);
  assert.equal(described.builtin, false);
  assert.equal(described.isolated, false);
  const input = described.input as { properties: Record<string, unknown>; required: string[] };
  assert.deepEqual(Object.keys(input.properties), ["region", "anio", "detalle", "importes"]);
  assert.deepEqual(input.required, ["region", "anio"]);
  assert.equal((described.output as { type: string }).type, "object");
  assert.equal(describeTaskType(catalog.get("hash")!).isolated, true);
});

Deno.test("a user type's output is printed as JSON, and it is not simulated without samples", () => {
  assert.deepEqual(formatOutput("informe", { total: 3 }, catalog), ['{"total":3}']);
  assert.deepEqual(simulatedTypes(catalog), ["text", "numbers", "echo", "sleep", "hash"]);
  assert.throws(() => makeTask("informe", Math.random, catalog), RangeError);
});

Deno.test("the simulator's checks catch a wrong output of a built-in type", () => {
  const request = makeTask("numbers", () => 0.5, catalog);
  assert.match(verifyOutput(request, { nada: 1 }, catalog) ?? "", /no tiene la forma/);
});

Deno.test("the launcher finds task modules in the role's arguments, then in COLMENA_TAREAS", () => {
  assert.deepEqual(taskModulePaths(["w1", "--tareas", "a/x.ts", "--tareas=b/y.ts,c.ts"], "z.ts"), [
    "a/x.ts",
    "b/y.ts",
    "c.ts",
  ]);
  assert.deepEqual(taskModulePaths(["w1"], "z.ts, /abs/w.ts"), ["z.ts", "/abs/w.ts"]);
  assert.deepEqual(taskModulePaths(["w1", "--", "--tareas", "a.ts"], undefined), []);
});

Deno.test("the launcher adds each module's folder and mod.ts to the role's --allow-read", () => {
  const command = ["deno", "run", "--allow-net", "--allow-read=./data", "server.ts", "--port", "1"];
  assert.deepEqual(withReadAccess(command, { modules: [], cwd: "/repo" }), command);
  assert.deepEqual(
    withReadAccess(command, { modules: ["../t/mis_tareas.ts", "/abs/o.ts"], cwd: "/repo" }),
    [
      "deno",
      "run",
      "--allow-net",
      "--allow-read=./data,/t,/abs,/repo/mod.ts",
      "server.ts",
      "--port",
      "1",
    ],
  );
  assert.deepEqual(
    withReadAccess(["deno", "run", "client.ts"], { modules: ["m/a.ts"], cwd: "/r" }),
    ["deno", "run", "--allow-read=/r/m,/r/mod.ts", "client.ts"],
  );
});

Deno.test("for deno compile, the launcher also bundles the task modules and bakes absolute paths", () => {
  const command = [
    "deno",
    "compile",
    "--allow-read=./data",
    "--output",
    "dist/worker",
    "worker.ts",
    "--tareas",
    "../t/mis_tareas.ts",
  ];
  assert.deepEqual(withReadAccess(command, { modules: ["../t/mis_tareas.ts"], cwd: "/repo" }), [
    "deno",
    "compile",
    "--allow-read=./data,/t,/repo/mod.ts",
    "--output",
    "dist/worker",
    "--include=/t",
    "--include=/repo/mod.ts",
    "worker.ts",
    "--tareas",
    "/t/mis_tareas.ts",
  ]);
});

Deno.test("TaskClient is typed by the user's catalogue (checked by deno check)", async () => {
  await using client = new TaskClient({ port: 1, reconnectForMs: 0, tasks: [informe] });
  // Never called: the assignments below are what `deno check` verifies.
  async function _typed(): Promise<void> {
    const output: { total: number } = await client.run("informe", { region: "norte", anio: 2024 });
    const words: number = (await client.run("text", { text: "hola" })).words;
    // @ts-expect-error: `anio` must be a number.
    await client.run("informe", { region: "norte", anio: "2024" });
    // @ts-expect-error: no such task type in the catalogue.
    await client.run("video", {});
    assert.ok(output.total + words >= 0);
  }
  assert.equal(typeof _typed, "function");
});
