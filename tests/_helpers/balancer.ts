/**
 * Real HAProxy and Nginx (Debian's packages) in front of test servers, run from the files in `deploy/` that
 * ship with colmena: HAProxy reads its addresses from the environment; Nginx's upstream addresses and listen
 * port are replaced in a copy of `deploy/nginx.conf`.
 *
 * @module
 */
import pg from "pg";
import { freePort, tempDir, waitUntil } from "./chaos.ts";
import { DATABASE_URL } from "./services.ts";
import { RoleProcess } from "../../scripts/role_process.ts";

const inCi = Deno.env.get("CI") === "true";
const DEPLOY = new URL("../../deploy/", import.meta.url);

async function installed(binary: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(binary, { args: ["-v"], stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Test options for tests that need `binary` (`haproxy`, `nginx`): ignored with a reason when it is not
 * installed, except under `CI=true`, where `.ci/run` installs it and its absence is a failure.
 */
export async function needsBinary(binary: string): Promise<{ ignore: boolean }> {
  if (await installed(binary)) return { ignore: false };
  if (inCi) throw new Error(`${binary} is not installed and CI=true: .ci/run should install it`);
  // deno-lint-ignore no-console
  console.warn(`[omitido] ${binary} no está instalado (apt-get install ${binary})`);
  return { ignore: true };
}

/** A server behind the balancer: its TCP and HTTP ports on 127.0.0.1. */
export interface Backend {
  readonly port: number;
  readonly httpPort: number;
}

/** A running balancer: the port clients use. */
export interface Balancer extends AsyncDisposable {
  readonly port: number;
  readonly process: RoleProcess;
  /** HAProxy only: the state of each server as HAProxy sees it (`UP`, `DOWN`, `MAINT`…), by name. */
  states(): Promise<Map<string, string>>;
}

/** Starts HAProxy with `deploy/haproxy.cfg` in front of two servers, and waits until both are `UP`. */
export async function startHaproxy(backends: readonly [Backend, Backend]): Promise<Balancer> {
  const port = freePort();
  const statsPort = freePort();
  const process = new RoleProcess("", [], {
    command: "haproxy",
    commandArgs: ["-db", "-f", new URL("haproxy.cfg", DEPLOY).pathname],
    env: {
      COLMENA_ESCUCHA: `127.0.0.1:${port}`,
      COLMENA_ESTADISTICAS: `127.0.0.1:${statsPort}`,
      COLMENA_SERVIDOR_1: `127.0.0.1:${backends[0].port}`,
      COLMENA_HTTP_1: String(backends[0].httpPort),
      COLMENA_SERVIDOR_2: `127.0.0.1:${backends[1].port}`,
      COLMENA_HTTP_2: String(backends[1].httpPort),
    },
  });
  const states = async (): Promise<Map<string, string>> => {
    const res = await fetch(`http://127.0.0.1:${statsPort}/;csv`);
    const csv = await res.text();
    const rows = csv.split("\n").map((line) => line.split(","));
    const header = rows[0] ?? [];
    const status = header.indexOf("status");
    const result = new Map<string, string>();
    for (const row of rows.slice(1)) {
      if (row[0] === "servidores" && row[1] !== "BACKEND") result.set(row[1]!, row[status]!);
    }
    return result;
  };
  try {
    await waitUntil(async () => {
      try {
        const s = await states();
        return s.get("servidor1") === "UP" && s.get("servidor2") === "UP";
      } catch {
        return false;
      }
    }, "HAProxy sees both servers UP");
  } catch (err) {
    await process.stop();
    throw new Error(`HAProxy did not start:\n${process.lines.join("\n")}`, { cause: err });
  }
  return {
    port,
    process,
    states,
    async [Symbol.asyncDispose]() {
      await process.stop();
    },
  };
}

/** Starts Nginx with a copy of `deploy/nginx.conf` pointed at two servers, and waits until it listens. */
export async function startNginx(backends: readonly [Backend, Backend]): Promise<Balancer> {
  const port = freePort();
  const dir = await tempDir("colmena-nginx-");
  const shipped = await Deno.readTextFile(new URL("nginx.conf", DEPLOY));
  const stream = shipped
    .replace("server servidor1:8888", `server 127.0.0.1:${backends[0].port}`)
    .replace("server servidor2:8888", `server 127.0.0.1:${backends[1].port}`)
    .replace("listen 8888;", `listen 127.0.0.1:${port};`);
  if (stream === shipped) throw new Error("deploy/nginx.conf no longer has the expected addresses");
  await Deno.writeTextFile(`${dir.path}/colmena-stream.conf`, stream);
  await Deno.writeTextFile(
    `${dir.path}/nginx.conf`,
    [
      "load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
      "daemon off;",
      "worker_processes 1;",
      `pid ${dir.path}/nginx.pid;`,
      "error_log stderr notice;",
      "events {}",
      `include ${dir.path}/colmena-stream.conf;`,
      "",
    ].join("\n"),
  );
  const process = new RoleProcess("", [], {
    command: "nginx",
    commandArgs: ["-p", dir.path, "-c", `${dir.path}/nginx.conf`],
  });
  try {
    await waitUntil(async () => {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    }, "Nginx listening");
  } catch (err) {
    await process.stop();
    await dir[Symbol.asyncDispose]();
    throw new Error(`Nginx did not start:\n${process.lines.join("\n")}`, { cause: err });
  }
  return {
    port,
    process,
    states: () => Promise.resolve(new Map()),
    async [Symbol.asyncDispose]() {
      await process.stop();
      await dir[Symbol.asyncDispose]();
    },
  };
}

/** A PostgreSQL schema of the test's own, dropped afterwards. */
export function uniqueSchema(): { readonly name: string } & AsyncDisposable {
  const name = `bal_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  return {
    name,
    async [Symbol.asyncDispose]() {
      const db = new pg.Client({ connectionString: DATABASE_URL });
      await db.connect();
      await db.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
      await db.end();
    },
  };
}
