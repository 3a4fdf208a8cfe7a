/**
 * The compile tasks build one standalone binary per role. `deno compile` needs Deno's runtime (`denort`),
 * which it downloads from Deno's own site; where that site is unreachable, set `DENORT_BIN` to a local copy.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const denort = Deno.env.get("DENORT_BIN");
const reason = "denort no disponible: deno compile descarga su runtime de la web de Deno, " +
  "inalcanzable aquí; defina DENORT_BIN con una copia local para esta prueba";

Deno.test({
  name: "deno task compile:cliente builds a binary that prints the client's usage",
  ignore: denort === undefined,
  async fn() {
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile:cliente"],
      cwd: ROOT,
      env: { DENORT_BIN: denort! },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(build.code, 0, new TextDecoder().decode(build.stderr));
    const run = await new Deno.Command(`${ROOT}dist/cliente`, { args: ["ayuda"], stdout: "piped" })
      .output();
    assert.match(new TextDecoder().decode(run.stdout), /Uso: cliente/);
  },
});

if (denort === undefined) {
  // deno-lint-ignore no-console
  console.warn(`[omitido] ${reason}`);
}
