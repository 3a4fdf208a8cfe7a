/**
 * End to end: what a person sees in the first hour with `deno task cliente` (issue "First hour with
 * colmena"): connection failures named for what they are, and Ctrl-C during `simular`.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `deno task -q cliente …`, as a person runs it: its exit code and output. */
async function cliente(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cliente", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    out: decoder.decode(output.stdout),
    err: decoder.decode(output.stderr),
  };
}

Deno.test("cliente --host with a name that does not resolve says so, not that a connection closed", async () => {
  const run = await cliente("--host", "no-existe.invalid", "ping");
  assert.equal(run.code, 1);
  assert.match(
    run.err,
    /^ERROR: CONNECTION_CLOSED: No se puede resolver el nombre «no-existe\.invalid»/m,
  );
  assert.match(run.err, /--host/);
  assert.doesNotMatch(run.err, /se cerró|sigue en marcha|deno task servidor/);
});

Deno.test("cliente says the connection was refused, with host and port, in every command", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(probe.addr.port);
  probe.close();
  for (const command of [["ping"], ["historial"], ["workers"], ["simular", "--num-tareas", "1"]]) {
    const run = await cliente("--host", "127.0.0.1", "--port", port, ...command);
    assert.equal(run.code, 1, command.join(" "));
    assert.match(
      run.err,
      new RegExp(`^ERROR: CONNECTION_CLOSED: Conexión rechazada en 127\\.0\\.0\\.1:${port}`, "m"),
      command.join(" "),
    );
  }
});
