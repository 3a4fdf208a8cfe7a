/**
 * A PostgreSQL cluster of a test's own, with TLS on and plaintext refused (`hostssl` only), on a free
 * loopback port in a temporary folder: made with the machine's `initdb`/`pg_ctl` (run as the `postgres`
 * user, since `initdb` refuses root), and stopped and removed on disposal. The machine's own PostgreSQL is
 * never touched.
 *
 * @module
 */
import { join } from "node:path";
import type { CertFiles } from "./test_ca.ts";

/** Why a TLS cluster cannot be made here, or `undefined` when it can (binaries and user present). */
export async function tlsClusterUnavailable(): Promise<string | undefined> {
  const bin = await postgresBin();
  if (bin === undefined) return "no PostgreSQL binaries under /usr/lib/postgresql/*/bin";
  const root = await isRoot();
  if (!root) {
    try {
      await run(join(bin, "initdb"), ["--version"]);
    } catch (err) {
      return `initdb does not run: ${err instanceof Error ? err.message : err}`;
    }
  }
  if (root && !(await userExists("postgres"))) return "no postgres user to run initdb";
  return undefined;
}

async function postgresBin(): Promise<string | undefined> {
  try {
    const versions: string[] = [];
    for await (const entry of Deno.readDir("/usr/lib/postgresql")) versions.push(entry.name);
    versions.sort((a, b) => Number(b) - Number(a));
    for (const version of versions) {
      const bin = `/usr/lib/postgresql/${version}/bin`;
      if (await Deno.stat(join(bin, "initdb")).then(() => true, () => false)) return bin;
    }
  } catch {
    // no PostgreSQL installed
  }
  return undefined;
}

let rootProbe: Promise<boolean> | undefined;

/** Whether this process runs as root (asked of `id`: `Deno.uid()` needs --allow-sys, which tests lack). */
function isRoot(): Promise<boolean> {
  rootProbe ??= new Deno.Command("id", { args: ["-u"], stdout: "piped", stderr: "null" }).output()
    .then((out) => new TextDecoder().decode(out.stdout).trim() === "0", () => false);
  return rootProbe;
}

async function userExists(name: string): Promise<boolean> {
  const out = await new Deno.Command("id", { args: ["-u", name], stdout: "null", stderr: "null" })
    .output();
  return out.success;
}

async function run(program: string, args: string[]): Promise<string> {
  const asPostgres = await isRoot();
  const out = await new Deno.Command(asPostgres ? "runuser" : program, {
    args: asPostgres ? ["-u", "postgres", "--", program, ...args] : args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`Cannot run "${program.split("/").pop()}": ${text.trim()}`);
  return text;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** A running TLS-only cluster; `url()` gives a URL for its `postgres` database. */
export class TlsPostgresCluster implements AsyncDisposable {
  readonly port: number;
  readonly #dir: string;
  readonly #bin: string;

  private constructor(dir: string, bin: string, port: number) {
    this.#dir = dir;
    this.#bin = bin;
    this.port = port;
  }

  /** Makes and starts a cluster that serves only TLS connections with the given server certificate. */
  static async start(cert: CertFiles): Promise<TlsPostgresCluster> {
    const bin = await postgresBin();
    if (bin === undefined) throw new Error("Cannot make a cluster: no PostgreSQL binaries");
    const dir = await Deno.makeTempDir({ prefix: "colmena-pg-" });
    const data = join(dir, "data");
    const cluster = new TlsPostgresCluster(dir, bin, freePort());
    try {
      if (await isRoot()) {
        const uid = Number((await run("/usr/bin/id", ["-u"])).trim());
        const gid = Number((await run("/usr/bin/id", ["-g"])).trim());
        await Deno.chown(dir, uid, gid);
        await run(join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        for (const [from, to] of [[cert.cert, "server.crt"], [cert.key, "server.key"]] as const) {
          await Deno.copyFile(from, join(data, to));
          await Deno.chown(join(data, to), uid, gid);
          await Deno.chmod(join(data, to), 0o600);
        }
      } else {
        await run(join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        await Deno.copyFile(cert.cert, join(data, "server.crt"));
        await Deno.copyFile(cert.key, join(data, "server.key"));
        await Deno.chmod(join(data, "server.key"), 0o600);
      }
      await Deno.writeTextFile(
        join(data, "postgresql.conf"),
        [
          `port = ${cluster.port}`,
          "listen_addresses = '127.0.0.1'",
          `unix_socket_directories = '${dir}'`,
          "ssl = on",
          "ssl_cert_file = 'server.crt'",
          "ssl_key_file = 'server.key'",
          "fsync = off",
          "",
        ].join("\n"),
        { append: true },
      );
      // TLS connections only: a plaintext one finds no pg_hba.conf line and is refused.
      await Deno.writeTextFile(
        join(data, "pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
      );
      await run(join(bin, "pg_ctl"), ["-D", data, "-l", join(dir, "log"), "-w", "start"]);
    } catch (err) {
      await cluster[Symbol.asyncDispose]();
      throw err;
    }
    return cluster;
  }

  /** A URL for the cluster's `postgres` database, by host name `localhost`, with `query` appended. */
  url(query = ""): string {
    return `postgres://postgres@localhost:${this.port}/postgres${query}`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await run(join(this.#bin, "pg_ctl"), ["-D", join(this.#dir, "data"), "-m", "immediate", "stop"])
      .catch(() => {});
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
