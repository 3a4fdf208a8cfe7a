/**
 * End to end: every command (`servidor`, `worker`, `cliente`, `bench`, `demo`, `caos`) prints its usage for
 * `--help`, `-h` and `--ayuda` and exits 0; a bad option gets one Spanish sentence and a pointer to the
 * help, not the usage; a misspelled subcommand gets a suggestion.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Runs `deno task -q <args…>` as a person would, and collects its output. */
async function denoTask(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

for (const command of ["servidor", "worker", "cliente", "bench", "demo", "caos"]) {
  Deno.test(`deno task ${command} prints its usage for --help, -h and --ayuda, and exits 0`, async () => {
    for (const flag of ["--help", "-h", "--ayuda"]) {
      const out = await denoTask(command, flag);
      assert.equal(out.code, 0, `${flag}: ${out.stderr}`);
      assert.match(out.stdout, /^Uso: deno task /, flag);
      assert.equal(out.stderr, "", flag);
    }
  });
}

Deno.test("the worker's usage names every option the README's configuration table gives it", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const flags = new Set<string>();
  for (const row of readme.split("\n").filter((line) => /^\|\s*[^|]*worker/.test(line))) {
    const option = row.split("|")[2] ?? "";
    for (const match of option.matchAll(/`(-{1,2}[a-z0-9-]+)`/g)) flags.add(match[1]!);
  }
  assert.ok(flags.size >= 15, [...flags].join(" "));
  const out = await denoTask("worker", "--help");
  for (const flag of flags) assert.match(out.stdout, new RegExp(`${flag}\\b`), flag);
});

Deno.test("a bad option value gets one sentence naming it and what it takes, and no usage dump", async () => {
  const out = await denoTask("cliente", "--prioridad", "alta", "enviar", "texto", "hola");
  assert.equal(out.code, 2);
  assert.equal(out.stderr.trim(), "ERROR: --prioridad debe ser un entero de 0 a 9, no «alta»");
  assert.equal(out.stdout.trim(), "Ayuda: deno task -q cliente --help");

  const server = await denoTask("servidor", "--port", "abc", "--store", "mongo");
  assert.equal(server.code, 2);
  assert.deepEqual(server.stderr.trim().split("\n").sort(), [
    "ERROR: --port debe ser un entero de 0 a 65535, no «abc»",
    "ERROR: --store debe ser sqlite, postgres o memory, no «mongo»",
  ]);
  assert.equal(server.stdout.trim(), "Ayuda: deno task -q servidor --help");
});

Deno.test("a misspelled cliente subcommand suggests the right one", async () => {
  const out = await denoTask("cliente", "enviat", "texto", "hola");
  assert.equal(out.code, 2);
  assert.match(out.stderr, /Orden desconocida: «enviat»\. ¿Quería decir «enviar»\?/);
  assert.doesNotMatch(out.stdout, /Órdenes:/);
});
