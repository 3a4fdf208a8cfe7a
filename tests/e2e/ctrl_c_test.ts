/**
 * End to end: one Ctrl-C drains. A terminal sends SIGINT to the whole foreground process group — `deno task`,
 * the launcher (`scripts/with_task_modules.ts`) and the role — so each role is started with `deno task` in a
 * process group of its own (`setsid`) and the group is signalled: the role must log its graceful shutdown
 * and exit 0, never take the signal twice ("Segunda señal", 130). The worker finishes the task it holds.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { TaskClient } from "../../client/task_client.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";
import { uniqueQueues } from "../_helpers/processes.ts";

const rabbit = await needsRabbit();
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const hasSetsid = await new Deno.Command("setsid", { args: ["--version"], stdout: "null" })
  .output().then((o) => o.success, () => false);

/** `deno task -q <args…>` as the leader of a new process group, with its output lines collected. */
class GroupedTask implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly #pump: Promise<void>;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(args: string[]) {
    this.#child = new Deno.Command("setsid", {
      args: [Deno.execPath(), "task", "-q", ...args],
      cwd: ROOT,
      env: { NO_COLOR: "1", AMQP_URL },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pump = Promise.all([this.#read(this.#child.stdout), this.#read(this.#child.stderr)])
      .then(() => {});
    this.status = this.#child.status;
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      this.lines.push(...text.split("\n").filter((l) => l !== ""));
    }
  }

  /** Waits until a line matches. */
  async waitFor(re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      for (const line of this.lines) {
        const match = line.match(re);
        if (match) return match;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`No line matched ${re}; output:\n${this.lines.join("\n")}`);
  }

  /** Signals the whole process group, as a terminal's Ctrl-C does. */
  ctrlC(): void {
    Deno.kill(-this.#child.pid, "SIGINT");
  }

  /** Waits for the exit and the last output. */
  async exited(): Promise<Deno.CommandStatus> {
    const status = await this.status;
    await this.#pump;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      Deno.kill(-this.#child.pid, "SIGKILL");
    } catch {
      // the group has already gone
    }
    await this.exited();
  }
}

Deno.test({
  name: "one Ctrl-C to the process group drains deno task servidor and worker, which exit 0",
  ...(hasSetsid ? rabbit : { ignore: true }),
  async fn() {
    await using queues = uniqueQueues("ctrlc");
    const q = ["--task-queue", queues.taskQueue, "--result-queue", queues.resultQueue];
    await using server = new GroupedTask([
      "servidor",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--http",
      "127.0.0.1:0",
      "--store",
      "memory",
      ...q,
    ]);
    const port = Number((await server.waitFor(/Escuchando en 127\.0\.0\.1:(\d+)$/))[1]);
    await using worker = new GroupedTask(["worker", "w-ctrlc", ...q]);
    await worker.waitFor(/^Worker w-ctrlc listo/);

    await using client = new TaskClient({ host: "127.0.0.1", port });
    const taskId = await client.submit("sleep", { ms: 1500 });
    while ((await client.status(taskId)).status !== "running") {
      await new Promise((r) => setTimeout(r, 50));
    }
    worker.ctrlC();
    const workerStatus = await worker.exited();
    const workerOut = worker.lines.join("\n");
    assert.doesNotMatch(workerOut, /Segunda señal/);
    assert.match(workerOut, /Worker w-ctrlc detenido \(1 tareas? procesadas?\)/);
    assert.equal(workerStatus.code, 0, workerOut);
    assert.equal((await client.result(taskId)).status, "succeeded");

    server.ctrlC();
    const serverStatus = await server.exited();
    const serverOut = server.lines.join("\n");
    assert.doesNotMatch(serverOut, /Segunda señal/);
    assert.match(serverOut, /Servidor detenido: 1 tareas? aceptadas?/);
    assert.equal(serverStatus.code, 0, serverOut);
  },
});
