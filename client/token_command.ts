/**
 * `cliente token crear|listar|revocar`: manages a server's tokens file (`--tokens`, `COLMENA_TOKENS_FILE`)
 * without connecting to anything. `crear` prints a new token once, on stdout alone, and appends only its
 * hash; the file is created readable by its owner only (mode 0600).
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as log from "../shared/log.ts";
import {
  formatTokenEntry,
  newToken,
  parseTokenFile,
  PRINCIPAL_NAME,
  type TokenEntry,
  TokenFileError,
} from "../shared/tokens.ts";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, writeText } from "./output.ts";

/** Usage of `cliente token`. */
export const TOKEN_USAGE = `Uso: deno task -q cliente token <orden> --tokens FICHERO
  token crear <nombre> [--admin] [--tipos a,b]   crea un token, lo imprime una sola vez y guarda su hash
  token listar                                   los tokens del fichero (id, nombre, rol, tipos)
  token revocar <id o nombre>                    borra del fichero ese token (o los de ese nombre)
Opciones:
  --tokens FICHERO   fichero de tokens del servidor   [COLMENA_TOKENS_FILE]
  --admin            rol admin: ve todas las tareas, workers y dlq (sin él: cliente, solo las suyas)
  --tipos LISTA      tipos de tarea que puede enviar, separados por comas (sin él: todos)
El servidor lee el fichero al arrancar: reinícielo tras crear o revocar tokens.`;

async function _readEntries(path: string): Promise<TokenEntry[]> {
  try {
    return parseTokenFile(await Deno.readTextFile(path), path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

function _fail(message: string): number {
  log.error(`${message}\n  Ayuda: deno task -q cliente token --help`);
  return EXIT_USAGE;
}

/** Runs `cliente token …` with the arguments after `token`; returns the exit status. */
export async function runTokenCommand(
  args: readonly string[],
  env: Readonly<Record<string, string>>,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: {
        tokens: { type: "string" },
        admin: { type: "boolean" },
        tipos: { type: "string" },
        help: { type: "boolean", short: "h" },
        ayuda: { type: "boolean" },
      },
    });
  } catch (err) {
    return _fail(`Argumentos no válidos: ${err instanceof Error ? err.message : String(err)}`);
  }
  const { values, positionals } = parsed;
  if (values.help || values.ayuda || positionals.length === 0) {
    log.info(TOKEN_USAGE);
    return positionals.length === 0 && !values.help && !values.ayuda ? EXIT_USAGE : EXIT_OK;
  }
  const path = values.tokens ?? env["COLMENA_TOKENS_FILE"];
  if (path === undefined) return _fail("Falta el fichero de tokens: --tokens FICHERO");
  const [order, ...rest] = positionals;
  try {
    switch (order) {
      case "crear":
      case "create":
        return await _create(path, rest, { admin: values.admin ?? false, tipos: values.tipos });
      case "listar":
      case "list":
        return await _list(path);
      case "revocar":
      case "revoke":
        return await _revoke(path, rest);
      default:
        return _fail(`Orden de token desconocida: «${order}» (crear, listar o revocar)`);
    }
  } catch (err) {
    if (err instanceof TokenFileError) {
      log.error(err.message);
      return EXIT_FAILURE;
    }
    throw err;
  }
}

async function _create(
  path: string,
  rest: readonly string[],
  options: { admin: boolean; tipos: string | undefined },
): Promise<number> {
  const [name, ...extra] = rest;
  if (name === undefined || extra.length > 0) return _fail("Uso: token crear <nombre>");
  if (!PRINCIPAL_NAME.test(name)) {
    return _fail(
      `Nombre no válido: «${name.slice(0, 100)}» (de 1 a 100 letras sin acentos, cifras, _ . @ -)`,
    );
  }
  let types: string[] | undefined;
  if (options.tipos !== undefined) {
    types = options.tipos.split(",").map((t) => t.trim()).filter((t) => t !== "");
    if (types.length === 0 || types.some((t) => t.length > 64)) {
      return _fail("--tipos necesita uno o más tipos de tarea separados por comas");
    }
  }
  await _readEntries(path); // a malformed file is reported, not appended to
  const { token, entry } = newToken(name, {
    role: options.admin ? "admin" : "cliente",
    types,
  });
  await Deno.writeTextFile(path, formatTokenEntry(entry), { append: true, mode: 0o600 });
  log.warn(
    `Token de «${name}» (${entry.role}${
      types === undefined ? "" : `, tipos: ${types.join(", ")}`
    }, id ${entry.id}) guardado en ${path}. Cópielo ahora: no se vuelve a mostrar. ` +
      "Reinicie el servidor para que lo acepte.",
  );
  writeText(`${token}\n`);
  return EXIT_OK;
}

async function _list(path: string): Promise<number> {
  const entries = await _readEntries(path);
  if (entries.length === 0) log.info(`No hay tokens en ${path}`);
  for (const e of entries) {
    log.info(
      `${e.id}  ${e.name}  ${e.role}  ${
        e.types === undefined ? "todos los tipos" : e.types.join(",")
      }` +
        `${e.createdAt === undefined ? "" : `  ${e.createdAt}`}`,
    );
  }
  return EXIT_OK;
}

async function _revoke(path: string, rest: readonly string[]): Promise<number> {
  const [which, ...extra] = rest;
  if (which === undefined || extra.length > 0) return _fail("Uso: token revocar <id o nombre>");
  const entries = await _readEntries(path);
  const kept = entries.filter((e) => e.id !== which && e.name !== which);
  const removed = entries.length - kept.length;
  if (removed === 0) {
    log.error(`Ningún token de ${path} tiene el id o el nombre «${which.slice(0, 100)}»`);
    return EXIT_FAILURE;
  }
  // Written whole to a new file, then renamed over the old one, so that a crash never leaves half of it.
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(temporary, kept.map(formatTokenEntry).join(""), { mode: 0o600 });
  await Deno.rename(temporary, path);
  log.info(
    `${removed} token(s) revocado(s) en ${path}; reinicie el servidor para que deje de aceptarlos`,
  );
  return EXIT_OK;
}
