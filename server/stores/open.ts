/**
 * Chooses the task store from the server's configuration and opens it.
 *
 * @module
 */
import type { ServerConfig } from "../../shared/config.ts";
import { ColmenaError } from "../../shared/errors.ts";
import { isUntrustedCertificate, readPemFile } from "../../shared/pem_files.ts";
import { redactUrl } from "../../shared/redact.ts";
import type { TaskStore } from "../../shared/ports.ts";
import { openPostgresTaskStore } from "./postgres.ts";
import { openSqliteTaskStore } from "./sqlite.ts";
import { MemoryTaskStore } from "./memory.ts";

/** Which store the configuration picks: PostgreSQL with a URL, else SQLite, unless `store` says. */
export function storeKind(config: ServerConfig): "sqlite" | "postgres" | "memory" {
  return config.store ?? (config.databaseUrl === undefined ? "sqlite" : "postgres");
}

/** A short Spanish description of where records go, for the start-up log. */
export function describeStore(config: ServerConfig): string {
  switch (storeKind(config)) {
    case "postgres":
      return `PostgreSQL ${redactUrl(config.databaseUrl ?? "")}, esquema ${config.dbSchema}`;
    case "memory":
      return "memoria (se pierde al parar)";
    default:
      return `SQLite ${config.dataDir}/colmena.db`;
  }
}

/**
 * `url` with `sslrootcert` set to `caFile` unless it names one already: as with libpq, the connection then
 * uses TLS and verifies the server's certificate against that CA (`sslmode=disable` still turns TLS off).
 */
export function withRootCert(url: string, caFile: string): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has("sslrootcert")) parsed.searchParams.set("sslrootcert", caFile);
  return parsed.href;
}

/** Opens the task store the configuration names; SQL migrations run here. */
export async function openTaskStore(config: ServerConfig): Promise<TaskStore> {
  switch (storeKind(config)) {
    case "postgres": {
      if (config.databaseUrl === undefined) {
        throw new TypeError("Cannot open the PostgreSQL store: DATABASE_URL is not set");
      }
      let url = config.databaseUrl;
      if (config.databaseCa !== undefined) {
        // Fail at start with a clear message; pg itself reads the file on every new connection.
        await readPemFile(config.databaseCa, "la CA de PostgreSQL (--database-ca)");
        url = withRootCert(url, config.databaseCa);
      }
      try {
        return await openPostgresTaskStore(url, { schema: config.dbSchema });
      } catch (err) {
        if (!(err instanceof ColmenaError) || !isUntrustedCertificate(err.cause)) throw err;
        throw new ColmenaError(err.code, {
          message:
            `${err.message}: el certificado TLS de PostgreSQL no es de una CA de confianza ` +
            "o no vale para ese nombre (compruebe --database-ca / DATABASE_CA_FILE y el host de la URL)",
          cause: err.cause,
        });
      }
    }
    case "memory":
      return new MemoryTaskStore(config.memoryMaxTasks);
    default:
      return await openSqliteTaskStore(`${config.dataDir}/colmena.db`);
  }
}
