/**
 * The README's library example type-checks: its `ts` blocks that import `./client.ts` are written to a
 * temporary file (the import pointed at this repository's `client.ts`) and run through `deno check` with the
 * repository's configuration. Nothing connects to a server.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ColmenaError } from "../../client.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The README's TypeScript blocks that use `./client.ts`, as written there. */
async function readmeLibraryBlocks(): Promise<string[]> {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  return [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((code) =>
    code.includes('from "./client.ts"')
  );
}

Deno.test("the README's library example passes deno check", async () => {
  const blocks = await readmeLibraryBlocks();
  assert.ok(blocks.length > 0, "the README has no library example");
  const dir = await Deno.makeTempDir({ prefix: "colmena-readme-" });
  try {
    const client = new URL("../../client.ts", import.meta.url).href;
    for (const [i, code] of blocks.entries()) {
      const path = join(dir, `ejemplo_${i}.ts`);
      await Deno.writeTextFile(path, code.replaceAll('"./client.ts"', JSON.stringify(client)));
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["check", "--quiet", "--config", join(ROOT, "deno.json"), path],
        cwd: ROOT,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const errors = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `README example ${i} does not type-check:\n${code}\n${errors}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("JSON.stringify of a ColmenaError keeps its code and message", () => {
  const err = new ColmenaError("TIMEOUT", {
    message: "La tarea superó su tiempo máximo de 100 ms",
  });
  assert.deepEqual(JSON.parse(JSON.stringify(err)), {
    name: "ColmenaError",
    code: "TIMEOUT",
    message: "La tarea superó su tiempo máximo de 100 ms",
    retryable: true,
  });
  assert.deepEqual(
    JSON.parse(JSON.stringify({ error: new ColmenaError("NOT_FOUND") })).error.code,
    "NOT_FOUND",
  );
});
