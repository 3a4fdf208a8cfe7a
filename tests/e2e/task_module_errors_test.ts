/**
 * End to end: a task module that cannot be used stops each role at start, through its `deno task`, with a
 * Spanish message and exit status 2, never a stack trace.
 *
 * @module
 */
import assert from "node:assert/strict";
import { CONTRACTS, writeUserTasks } from "../_helpers/user_tasks.ts";

const ROOT = new URL("../../", import.meta.url);

async function role(args: string[]): Promise<{ code: number; text: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", AMQP_URL: "amqp://guest:guest@127.0.0.1:1" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, text: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

function assertRefused(outcome: { code: number; text: string }, message: RegExp): void {
  assert.equal(outcome.code, 2, outcome.text);
  assert.match(outcome.text, message);
  assert.doesNotMatch(outcome.text, /^\s+at /m, "a stack trace was printed");
  assert.doesNotMatch(outcome.text, /Conectado a RabbitMQ/);
}

Deno.test("deno task servidor stops at start on a missing task module", async () => {
  await using tasks = await writeUserTasks();
  assertRefused(
    await role([
      "servidor",
      "--port",
      "0",
      "--store",
      "memory",
      "--tareas",
      `${tasks.dir}/nada.ts`,
    ]),
    /No se encuentra el módulo de tareas .*nada\.ts/,
  );
});

Deno.test("deno task worker stops at start on a module that redefines a built-in type", async () => {
  await using tasks = await writeUserTasks({
    "mis_tareas.ts": CONTRACTS.replace('name: "resumen"', 'name: "echo"'),
  });
  assertRefused(
    await role(["worker", "w1", "--tareas", tasks.path]),
    /La tarea «echo» redefine una tarea incorporada/,
  );
});

Deno.test("deno task worker stops at start on a handler module that does not load", async () => {
  await using tasks = await writeUserTasks({ "resumen_handler.ts": "export default 42;" });
  assertRefused(
    await role(["worker", "w1", "--tareas", tasks.path]),
    /El handler de la tarea «resumen» no es una función/,
  );
});

Deno.test("deno task worker stops at start when --solo names a type it does not have", async () => {
  await using tasks = await writeUserTasks();
  assertRefused(
    await role(["worker", "w1", "--tareas", tasks.path, "--solo", "resumen,video"]),
    /--solo nombra tipos que este worker no tiene: video/,
  );
});

Deno.test("deno task cliente stops on a module that defines no tasks", async () => {
  await using tasks = await writeUserTasks({ "mis_tareas.ts": "export const nada = 1;" });
  assertRefused(
    await role(["cliente", "--tareas", tasks.path, "tipos"]),
    /no define tareas: debe hacer «export default \[tarea1, tarea2\]»/,
  );
});

Deno.test("deno task servidor stops at start on a module whose schemas are not zod", async () => {
  const mod = new URL("../../mod.ts", import.meta.url).href;
  await using tasks = await writeUserTasks({
    "mis_tareas.ts": `import { defineTask } from "${mod}";
export default [defineTask({ name: "mala", description: "d", input: {}, output: {}, timeoutMs: 5,
  handler: new URL("./h.ts", import.meta.url) })];`,
  });
  assertRefused(
    await role(["servidor", "--port", "0", "--store", "memory", "--tareas", tasks.path]),
    /La tarea «mala» no tiene esquemas de zod/,
  );
});
