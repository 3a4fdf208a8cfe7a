/**
 * A user's own task module, written into a temporary folder outside the repository for the tests of
 * `--tareas`: `mis_tareas.ts` (contracts) and one handler module per task, importing colmena's `mod.ts`
 * by absolute URL as a user's module would by relative path.
 *
 * @module
 */

const MOD = new URL("../../mod.ts", import.meta.url).href;

/** The contract module: `resumen` (text, takes a file, 4 KiB limit) and `factorial` (isolated). */
export const CONTRACTS = `
import { defineTask, z } from "${MOD}";

export const resumen = defineTask({
  name: "resumen",
  description: "Cuenta las frases y las palabras de un texto",
  input: z.object({ texto: z.string().min(1), idioma: z.enum(["es", "en"]).default("es") }),
  output: z.object({ frases: z.number().int(), palabras: z.number().int(), idioma: z.string() }),
  timeoutMs: 5_000,
  limits: { maxPayloadBytes: 4_096, maxOutputBytes: 1_000 },
  fileField: "texto",
  handler: new URL("./resumen_handler.ts", import.meta.url),
});

export const factorial = defineTask({
  name: "factorial",
  description: "Factorial exacto de un entero",
  input: z.object({ n: z.number().int().min(0).max(500) }),
  output: z.object({ digitos: z.number().int(), valor: z.string() }),
  timeoutMs: 10_000,
  isolated: true,
  handler: new URL("./factorial_handler.ts", import.meta.url),
});

export default [resumen, factorial];
`;

/** The `resumen` handler: counts sentences and words, logs through its context. */
export const RESUMEN_HANDLER = `
import { resumen } from "./mis_tareas.ts";
import { isMainThread } from "node:worker_threads";

export default resumen.implement(({ texto, idioma }, { log, attempt }) => {
  log.info(\`resumiendo \${texto.length} caracteres (intento \${attempt}, hilo principal: \${isMainThread})\`);
  const frases = texto.split(/[.!?]+/).filter((f) => f.trim() !== "").length;
  const palabras = texto.trim() === "" ? 0 : texto.trim().split(/\\s+/).length;
  return { frases, palabras, idioma };
});
`;

/** The `factorial` handler: a BigInt loop, run in a thread. */
export const FACTORIAL_HANDLER = `
import { factorial } from "./mis_tareas.ts";

export default factorial.implement(({ n }) => {
  let value = 1n;
  for (let i = 2n; i <= BigInt(n); i++) value *= i;
  const text = value.toString();
  return { digitos: text.length, valor: text };
});
`;

/** A folder with the user's task module; removed on disposal. `path` is the contract module's path. */
export async function writeUserTasks(
  files: Record<string, string> = {},
): Promise<{ readonly dir: string; readonly path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "colmena-tareas-" });
  const all: Record<string, string> = {
    "mis_tareas.ts": CONTRACTS,
    "resumen_handler.ts": RESUMEN_HANDLER,
    "factorial_handler.ts": FACTORIAL_HANDLER,
    ...files,
  };
  for (const [name, text] of Object.entries(all)) await Deno.writeTextFile(`${dir}/${name}`, text);
  return {
    dir,
    path: `${dir}/mis_tareas.ts`,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** The exact factorial of `n`, as a decimal string. */
export function factorialOf(n: number): string {
  let value = 1n;
  for (let i = 2n; i <= BigInt(n); i++) value *= i;
  return value.toString();
}
