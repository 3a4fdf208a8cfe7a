/**
 * Chaos: a server that runs out of file descriptors keeps its accept loop. The real server's descriptor
 * limit is lowered (`prlimit`), a flood of connections takes every descriptor until accepting fails, the
 * flood goes away, and a well-behaved client is then served.
 */
import assert from "node:assert/strict";
import { needsRabbit } from "../_helpers/services.ts";
import { startServer, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";

const rabbit = await needsRabbit();

/** Whether `prlimit` (util-linux) can lower another process's limits here. */
async function prlimitAvailable(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("prlimit", { args: ["--version"], stdout: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

const prlimit = await prlimitAvailable();
const inCi = Deno.env.get("CI") === "true";

/** Descriptors the server keeps: its own (broker, stdio, runtime…) plus a few dozen for clients. */
const SERVER_NOFILE = 96;
/** Connections in the flood: more than the server has descriptors left, fewer than the listen backlog. */
const FLOOD = 120;

/** The descriptors a process holds now (read by `ls`: Deno lets only `--allow-all` read `/proc`). */
async function openDescriptors(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("ls", { args: ["-1", `/proc/${pid}/fd`] }).output();
  return new TextDecoder().decode(stdout).split("\n").filter((l) => l !== "").length;
}

Deno.test({
  name: "server out of file descriptors keeps accepting once they are free again",
  // Without prlimit (util-linux) the limit of the running server cannot be lowered: skipped, but not in CI.
  ignore: rabbit.ignore || (!prlimit && !inCi),
  async fn() {
    await using queues = uniqueQueues("emfile");
    await using server = await startServer(queues, ["--store", "memory", "--sin-http"]);
    const held = await openDescriptors(server.pid);
    assert.ok(held < SERVER_NOFILE - 20, `the server holds ${held} descriptors at start`);
    const lowered = await new Deno.Command("prlimit", {
      args: ["--pid", String(server.pid), `--nofile=${SERVER_NOFILE}:${SERVER_NOFILE}`],
    }).output();
    assert.ok(lowered.success, new TextDecoder().decode(lowered.stderr));

    await using stack = new AsyncDisposableStack();
    // The flood: connections that say nothing. The kernel completes each handshake; the server takes
    // them until it has no descriptor left.
    for (let i = 0; i < FLOOD; i++) stack.use(await RawClient.connect(server.port));
    await server.waitFor(/aceptar conexiones/);

    await stack.disposeAsync();
    await using polite = await RawClient.connect(server.port);
    await polite.send({ type: "hello", id: "h", client: { name: "educada", kind: "cli" } });
    assert.equal((await polite.reply("h", 15_000)).type, "welcome");
    await polite.send({ type: "ping", id: "p" });
    assert.equal((await polite.reply("p")).type, "pong");
    assert.equal(
      server.lines.some((l) => l.includes("dejó de aceptar conexiones")),
      false,
      "the accept loop never ended",
    );
  },
});
