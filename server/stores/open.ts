/**
 * Chooses the task store from the server's configuration and opens it.
 *
 * @module
 */
import type { ServerConfig } from "../../shared/config.ts";
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

/** Opens the task store the configuration names; SQL migrations run here. */
export async function openTaskStore(config: ServerConfig): Promise<TaskStore> {
  switch (storeKind(config)) {
    case "postgres": {
      if (config.databaseUrl === undefined) {
        throw new TypeError("Cannot open the PostgreSQL store: DATABASE_URL is not set");
      }
      return await openPostgresTaskStore(config.databaseUrl, { schema: config.dbSchema });
    }
    case "memory":
      return new MemoryTaskStore(config.memoryMaxTasks);
    default:
      return await openSqliteTaskStore(`${config.dataDir}/colmena.db`);
  }
}
