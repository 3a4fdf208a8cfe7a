/**
 * The numbered schema migrations of the SQL stores: `migrations/<flavour>/NNNN_<name>.sql`, numbered from
 * 0001 without gaps. An applied migration is never edited; a change is a new file.
 *
 * @module
 */
import type { Flavour } from "./columns.ts";

const MIGRATION_FILE = /^(\d{4})_[a-z0-9_]+\.sql$/;

/** One migration file. */
export interface Migration {
  /** Its number, from 1. */
  readonly version: number;
  /** Its file name, recorded with the version once applied. */
  readonly name: string;
  /** Its SQL text. */
  readonly sql: string;
}

/** The folder that holds one flavour's migrations. */
export function migrationsFolder(flavour: Flavour): URL {
  return new URL(`./migrations/${flavour}/`, import.meta.url);
}

/**
 * Reads a flavour's migrations in order. Throws `TypeError` when two files share a number or one is
 * missing, and what `Deno.readDir` throws when the folder cannot be read (`NotCapable` without
 * `--allow-read` on it).
 */
export async function readMigrations(flavour: Flavour): Promise<Migration[]> {
  const folder = migrationsFolder(flavour);
  const found: { version: number; name: string }[] = [];
  for await (const entry of Deno.readDir(folder)) {
    const match = MIGRATION_FILE.exec(entry.name);
    if (entry.isFile && match !== null) found.push({ version: Number(match[1]), name: entry.name });
  }
  found.sort((a, b) => a.version - b.version);
  found.forEach((file, i) => {
    if (file.version !== i + 1) {
      throw new TypeError(
        `Cannot read ${flavour} migrations: "${file.name}" should be number ${i + 1}`,
      );
    }
  });
  return await Promise.all(found.map(async (file) => ({
    ...file,
    sql: await Deno.readTextFile(new URL(file.name, folder)),
  })));
}
