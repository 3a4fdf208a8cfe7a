/**
 * End to end: a server that cannot open its data folder says why in Spanish, in one line an operator can act
 * on, and exits 1; no stack trace.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Runs `deno task servidor` with `args`, as a user does. */
async function servidor(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "servidor", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

function assertNoStack(text: string): void {
  assert.doesNotMatch(text, /^\s+at /m, "no stack trace");
  assert.doesNotMatch(text, /Uncaught/);
}

Deno.test("deno task servidor with a data folder outside ./data says which permission it lacks and exits 1", async () => {
  const outside = await Deno.makeTempDir({ prefix: "colmena-fuera-" });
  try {
    const { code, text } = await servidor("--data-dir", outside, "--port", "0");
    assert.equal(code, 1, text);
    assert.match(text, /ERROR: Falta un permiso de Deno: .*write access.*colmena-fuera-/);
    assert.match(text, /carpeta de datos dentro de \.\/data/);
    assertNoStack(text);
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("deno task servidor with a data folder it cannot create says so in Spanish and exits 1", async () => {
  await Deno.mkdir(`${ROOT}data`, { recursive: true });
  const file = await Deno.makeTempFile({ dir: `${ROOT}data`, prefix: "no-es-carpeta-" });
  try {
    const { code, text } = await servidor("--data-dir", `${file}/sub`, "--port", "0");
    assert.equal(code, 1, text);
    assert.match(
      text,
      /ERROR: No se puede abrir la base de datos SQLite .*no-es-carpeta-.*colmena\.db/,
    );
    assert.match(text, /causa: .*ENOTDIR/);
    assertNoStack(text);
  } finally {
    await Deno.remove(file);
  }
});
