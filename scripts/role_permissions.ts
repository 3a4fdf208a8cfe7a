/**
 * The permissions a role's configuration calls for, computed by the launcher before it starts the role:
 * the hosts `--allow-net` names, the secret files it may read, and the worker's blob folder.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import type { ServerConfig, WorkerConfig } from "../shared/config.ts";

/** `host:port` as `--allow-net` takes it (IPv6 in brackets). */
function _hostPort(hostname: string, port: number): string {
  const host = hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
  return `${host}:${port}`;
}

/** The `host:port` of a URL, with the scheme's default port; `undefined` when it names no host. */
function _endpoint(url: string, defaults: Record<string, number>): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.hostname === "") return undefined;
  const port = parsed.port === "" ? defaults[parsed.protocol] : Number(parsed.port);
  return port === undefined ? undefined : _hostPort(parsed.hostname, port);
}

const AMQP_PORTS = { "amqp:": 5672, "amqps:": 5671 };
const POSTGRES_PORTS = { "postgres:": 5432, "postgresql:": 5432 };
const HTTP_PORTS = { "http:": 80, "https:": 443 };

/** The hosts of the object store, `[]` without S3, `undefined` when they cannot be listed (AWS itself). */
function _s3Hosts(config: ServerConfig | WorkerConfig): string[] | undefined {
  if (config.s3Bucket === undefined) return [];
  if (config.s3Endpoint === undefined) return undefined;
  const endpoint = _endpoint(config.s3Endpoint, HTTP_PORTS);
  return endpoint === undefined ? undefined : [endpoint];
}

/**
 * The `--allow-net` list of a role: for the worker, RabbitMQ and the S3 endpoint; for the server also its
 * own listening addresses and PostgreSQL. `undefined` when some host cannot be known in advance (S3 on AWS
 * without an endpoint, a PostgreSQL URL whose host is a socket or a query parameter): then the role keeps
 * a plain `--allow-net`.
 */
export function netAllowList(
  role: "servidor" | "worker",
  config: ServerConfig | WorkerConfig,
): string[] | undefined {
  const amqp = _endpoint(config.amqpUrl, AMQP_PORTS);
  const s3 = _s3Hosts(config);
  if (amqp === undefined || s3 === undefined) return undefined;
  const hosts = [amqp, ...s3];
  if (role === "servidor") {
    const server = config as ServerConfig;
    hosts.push(_hostPort(server.host, server.port));
    if (!server.sinHttp) hosts.push(_hostPort(server.http.hostname, server.http.port));
    const usesPostgres = server.store === "postgres" ||
      (server.store === undefined && server.databaseUrl !== undefined);
    if (usesPostgres && server.databaseUrl !== undefined) {
      const db = _endpoint(server.databaseUrl, POSTGRES_PORTS);
      if (db === undefined || /[?&]host=/.test(server.databaseUrl)) return undefined;
      hosts.push(db);
    }
  }
  return [...new Set(hosts)];
}

/** The files holding a role's secrets that it must be able to read: `<VARIABLE>_FILE`s and the key file. */
export function secretFiles(
  config: { readonly signingKeyFile?: string | undefined },
  env: Readonly<Record<string, string | undefined>>,
  fileVariables: readonly string[],
): string[] {
  const paths = fileVariables.map((name) => env[name]).filter((p) => p !== undefined && p !== "");
  if (config.signingKeyFile !== undefined) paths.push(config.signingKeyFile);
  return [...new Set(paths as string[])];
}

/** The worker's only folder on disk: where it keeps objects without S3 (`<data-dir>/blobs`). */
export function workerBlobFolder(config: WorkerConfig, cwd: string): string {
  const blobs = `${config.dataDir}/blobs`;
  return isAbsolute(blobs) ? blobs : resolve(cwd, blobs);
}
