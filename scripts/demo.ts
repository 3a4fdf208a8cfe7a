/**
 * `deno task demo`: the whole system in one command. Starts a server and two workers, runs simulated web and
 * mobile clients over every task type, prints results as they arrive and the summary, then shuts it all down.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { deleteTopology } from "../shared/adapters/rabbitmq/topology.ts";
import { TASK_TYPES } from "../shared/tasks.ts";
import { wantsHelp } from "../shared/help.ts";
import * as log from "../shared/log.ts";
import { redactUrl } from "../shared/redact.ts";
import { simulate } from "../client/simulate.ts";
import { formatSummary } from "../client/summary.ts";
import type { SimulatedTask } from "../client/stats.ts";
import { RoleProcess } from "./role_process.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const AMQP_URL = Deno.env.get("AMQP_URL") ?? "amqp://guest:guest@127.0.0.1:5672";
const TASKS = Number(Deno.env.get("COLMENA_DEMO_TAREAS") ?? 300);
const CLIENTS = 8;

async function reachable(url: string): Promise<boolean> {
  const parsed = new URL(url.replace(/^amqps?:/, "http:"));
  try {
    const conn = await Deno.connect({
      hostname: parsed.hostname,
      port: Number(parsed.port || 5672),
    });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function dockerAvailable(): Promise<boolean> {
  try {
    const out = await new Deno.Command("docker", { args: ["info"], stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/** Makes sure RabbitMQ answers: starts it with Docker Compose where possible, or says how. */
async function ensureRabbit(): Promise<boolean> {
  if (await reachable(AMQP_URL)) return true;
  log.warn(`RabbitMQ no responde en ${redactUrl(AMQP_URL)}.`);
  if (await dockerAvailable()) {
    log.info("Arrancando RabbitMQ con: docker compose up -d rabbitmq");
    const up = await new Deno.Command("docker", {
      args: ["compose", "up", "-d", "rabbitmq"],
      cwd: ROOT,
    }).output();
    if (up.success) {
      for (let i = 0; i < 60; i++) {
        if (await reachable(AMQP_URL)) return true;
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }
  log.error(
    "No hay RabbitMQ. Arránquelo con `docker compose up -d rabbitmq` (con Docker) o con " +
      "`rabbitmq-server -detached` (instalado en la máquina), y vuelva a ejecutar `deno task -q demo`.",
  );
  return false;
}

/** Starts a role whose lines are echoed with a prefix, and waits for its ready line. */
async function startRole(
  label: string,
  script: string,
  args: string[],
  readyRe: RegExp,
): Promise<{ role: RoleProcess; ready: RegExpMatchArray }> {
  const role = new RoleProcess(script, args, {
    env: { AMQP_URL },
    onLine: (line) => log.event(`[${label}] ${line}`),
  });
  const exited = role.status.then((s): never => {
    throw new Error(`${label} terminó antes de estar listo (código ${s.code})`);
  });
  exited.catch(() => {}); // a normal exit after being ready is not an error
  try {
    return { role, ready: await Promise.race([role.waitFor(readyRe, 60_000), exited]) };
  } catch (err) {
    await role.stop();
    throw err;
  }
}

function describe(task: SimulatedTask): string {
  const kind = task.kind === "mobile" ? "móvil" : task.kind;
  const mark = task.ok ? "✓" : `✗ ${task.error?.code ?? ""}`;
  const latency = task.latencyMs === null ? "" : ` ${task.latencyMs.toFixed(1)} ms`;
  return `${mark} ${task.type.padEnd(7)} ${kind.padEnd(5)} ${task.client.padEnd(7)} ` +
    `→ ${task.worker ?? "-"}${latency}`;
}

const USAGE = `Uso: deno task -q demo
  Arranca un servidor y dos workers con colas propias (demo.<id>.*), simula clientes web y móviles
  sobre todos los tipos de tarea, muestra cada resultado y el resumen, y lo apaga y borra todo.
  Necesita RabbitMQ                                  [AMQP_URL, amqp://guest:guest@127.0.0.1:5672]
  Tareas simuladas                                   [COLMENA_DEMO_TAREAS, 300]
  --help, -h, --ayuda      esta ayuda`;

async function main(): Promise<number> {
  if (wantsHelp(Deno.args)) {
    log.info(USAGE);
    return 0;
  }
  if (Deno.args.length > 0) {
    log.error(`La demo no admite argumentos («${Deno.args.join(" ")}»)`);
    log.info("Ayuda: deno task -q demo --help");
    return 2;
  }
  log.info("colmena · demostración: un servidor, dos workers y clientes web y móviles simulados\n");
  if (!(await ensureRabbit())) return 1;
  const id = crypto.randomUUID().slice(0, 8);
  const queues = { taskQueue: `demo.${id}.task_queue`, resultQueue: `demo.${id}.result_queue` };
  const dataDir = await Deno.makeTempDir({ prefix: "colmena-demo-" });
  const queueArgs = [
    "--task-queue",
    queues.taskQueue,
    "--result-queue",
    queues.resultQueue,
    "--data-dir",
    dataDir,
  ];
  const roles: RoleProcess[] = [];
  try {
    const server = await startRole(
      "servidor",
      "server.ts",
      ["--host", "127.0.0.1", "--port", "0", "--http", "127.0.0.1:0", ...queueArgs],
      /^Escuchando en 127\.0\.0\.1:(\d+)$/,
    );
    roles.push(server.role);
    const port = Number(server.ready[1]);
    for (const name of ["worker1", "worker2"]) {
      const worker = await startRole(name, "worker.ts", [name, "--quiet", ...queueArgs], /listo/);
      roles.push(worker.role);
    }
    log.flushLog();
    log.info(
      `\nSimulando ${CLIENTS} clientes (web y móvil) con ${TASKS} tareas de todos los tipos:\n`,
    );
    const summary = await simulate({
      host: "127.0.0.1",
      port,
      clients: CLIENTS,
      kinds: ["web", "mobile"],
      tasks: TASKS,
      window: 10,
      namePrefix: "demo",
      onResult: (task) => log.event(describe(task)),
    });
    log.flushLog();
    log.info("\n" + formatSummary(summary));
    log.info("\nApagando workers y servidor…");
    return summary.failed === 0 ? 0 : 1;
  } catch (err) {
    log.error("La demostración falló", err);
    return 1;
  } finally {
    for (const role of roles.reverse()) await role.stop();
    log.flushLog();
    await deleteTopology(AMQP_URL, queues, TASK_TYPES).catch(() => {});
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    log.info("Demostración terminada.");
  }
}

if (import.meta.main) Deno.exit(await main());
