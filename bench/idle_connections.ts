// deno-lint-ignore-file no-console
// A measuring tool: its report on stdout is its whole interface.
/**
 * Memory of idle client connections: starts a colmena server (SQLite store, its own queues and data
 * folder, no workers), opens N TCP connections that each say `hello` and then stay idle, and prints the
 * server's RSS before, 3 s after they are open, and once it has settled (V8 returns the young generation
 * the burst grew after some idle time; `/proc/<pid>/status`, read with `cat`). Queues and folder are removed.
 * The server runs with the `--v8-flags` of `deno task servidor`, or without them given `--sin-v8-flags`.
 *
 *   deno run --allow-net --allow-run --allow-read --allow-write=data --allow-env bench/idle_connections.ts 10000
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { deleteTopology } from "./raw_load.ts";
import { ChildProcess, roleV8Flags } from "./processes.ts";
import { cancelStream, typeQueue } from "../shared/adapters/rabbitmq/names.ts";
import { TASK_TYPES } from "../shared/tasks.ts";

/** How long the report waits at most for the server's RSS to settle once the connections are open. */
const SETTLE_MAX_MS = 90_000;
/** How often it reads the RSS meanwhile. */
const SETTLE_STEP_MS = 5_000;
/** It waits at least this long: V8's memory reducer needs the process idle for a while first. */
const SETTLE_MIN_MS = 30_000;

const count = Number(Deno.args.find((arg) => !arg.startsWith("--")) ?? "10000");
const v8Flags = Deno.args.includes("--sin-v8-flags") ? [] : roleV8Flags("servidor");
const amqpUrl = Deno.env.get("AMQP_URL") ?? "amqp://guest:guest@127.0.0.1:5672";
const root = fileURLToPath(new URL("../", import.meta.url));
const id = crypto.randomUUID().slice(0, 8);
const dir = `data/idle-${id}`;
const taskQueue = `bench-idle-${id}.tareas`;
const resultQueue = `bench-idle-${id}.resultados`;
const serverId = `bench-idle-${id}`;

async function rssMiB(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped" })
    .output();
  const kib = Number(/VmRSS:\s+(\d+)/.exec(new TextDecoder().decode(out.stdout))?.[1] ?? NaN);
  return Math.round(kib / 102.4) / 10;
}

const server = ChildProcess.spawn("servidor", {
  cwd: root,
  args: [
    ...["run", "--allow-net", "--allow-env", "--ignore-env", ...v8Flags],
    ...[
      `--allow-read=${dir},server/stores/migrations,server/stores/sqlite_writer.ts`,
      `--allow-write=${dir}`,
      "server.ts",
    ],
    ...["--port", "0", "--host", "127.0.0.1", "--sin-http", "--server-id", serverId],
    ...["--max-connections", String(count + 100)],
    ...["--max-connections-per-address", String(count + 100)],
    ...["--task-queue", taskQueue, "--result-queue", resultQueue, "--amqp-url", amqpUrl],
    ...["--data-dir", dir],
  ],
});
const conns: Deno.TcpConn[] = [];
try {
  const match = await server.waitForLine(/Escuchando en (\S+):(\d+)/, 30_000);
  const port = Number(match[2]);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const before = await rssMiB(server.pid);
  const encoder = new TextEncoder();
  for (let i = 0; i < count; i += 200) {
    const opened = await Promise.all(
      Array.from({ length: Math.min(200, count - i) }, async (_, j) => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        const hello = {
          type: "hello",
          id: "h",
          client: { name: Deno.env.get("IDLE_NAME") ?? `idle-${i + j}`, kind: "cli" },
        };
        await conn.write(encoder.encode(JSON.stringify(hello) + "\n"));
        const buf = new Uint8Array(4096);
        const n = await conn.read(buf);
        if (n === null || !new TextDecoder().decode(buf.subarray(0, n)).includes("welcome")) {
          throw new Error(`Connection ${i + j} got no welcome`);
        }
        return conn;
      }),
    );
    conns.push(...opened);
  }
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  const opened = await rssMiB(server.pid);
  // V8 hands back the young generation the burst grew once the process has been idle for a while (its
  // memory reducer, some 20–30 s here): the settled figure is what idle connections keep.
  let after = opened;
  for (let waited = 0; waited < SETTLE_MAX_MS; waited += SETTLE_STEP_MS) {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_STEP_MS));
    const now = await rssMiB(server.pid);
    const settled = waited >= SETTLE_MIN_MS && Math.abs(now - after) < 1;
    after = now;
    if (settled) break;
  }
  console.log(
    `${count} conexiones inactivas: RSS del servidor ${before} MiB antes, ${opened} MiB recién ` +
      `abiertas, ${after} MiB asentado tras un rato inactivas ` +
      `(${Math.round(((after - before) * 1024 * 1024) / count)} bytes por conexión; ` +
      `opciones de V8: ${v8Flags.join(" ") || "ninguna"})`,
  );
} finally {
  for (const conn of conns) conn.close();
  await server.stop(5_000);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const queues = [
    ...TASK_TYPES.map((type) => typeQueue(taskQueue, type)),
    `${taskQueue}.dlq`,
    cancelStream(taskQueue),
    resultQueue,
    `${resultQueue}.server.${serverId}`,
  ];
  const exchanges = [`${resultQueue}.replies`, `${taskQueue}.control`, `${resultQueue}.heartbeats`];
  await deleteTopology(amqpUrl, { queues, exchanges }).catch(() => {});
}
