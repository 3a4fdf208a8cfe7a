/**
 * Process lifecycle helpers for the entry files: configuration failures and shutdown signals.
 *
 * @module
 */
import { ConfigError, type ConfigInput, type ConfigOf, loadConfig, type Role } from "./config.ts";
import {
  loadSigningKey,
  readSecretFiles,
  registerConfigSecrets,
  secretFlagWarnings,
} from "./secrets.ts";
import { ColmenaError } from "./errors.ts";
import { wantsHelp } from "./help.ts";
import * as log from "./log.ts";
import { TlsSetupError } from "./pem_files.ts";
import { TaskDefinitionError } from "./task_definition.ts";
import { TaskModuleError } from "./task_modules.ts";

/** A task module or handler that cannot be used: reported in Spanish, without a stack, exit status 2. */
export function exitOnTaskModuleError(err: unknown): void {
  if (
    err instanceof TaskModuleError || err instanceof TaskDefinitionError ||
    (err instanceof Error && err.name === "HandlerLoadError")
  ) {
    log.error(err.message);
    Deno.exit(2);
  }
}

/** Resolves with the name of the first SIGINT or SIGTERM received; a second one exits at once. */
export function shutdownSignal(): Promise<Deno.Signal> {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  let received = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      if (received) {
        log.warn("Segunda señal: salida inmediata");
        Deno.exit(130);
      }
      received = true;
      resolve(signal);
    });
  }
  return promise;
}

/**
 * Prints a configuration error, one Spanish sentence per problem, and where to find help
 * (`Ayuda: deno task <command> --help`), then exits with status 2; rethrows anything else.
 */
export function exitOnConfigError(err: unknown, command: string): never {
  if (err instanceof ConfigError) {
    for (const line of err.message.split("\n")) log.error(line);
    log.info(`Ayuda: deno task -q ${command} --help`);
    Deno.exit(2);
  }
  if (err instanceof Deno.errors.NotCapable) {
    log.error(`Falta un permiso al leer la configuración: ${err.message} (¿falta --allow-env?)`);
    Deno.exit(2);
  }
  throw err;
}

/** Prints `usage` and exits with status 0 when the arguments ask for help (`--help`, `-h`, `--ayuda`). */
export function exitOnHelp(args: readonly string[], usage: string): void {
  if (!wantsHelp(args)) return;
  log.info(usage);
  log.flushLog();
  Deno.exit(0);
}

/** Reads the given environment variables; absent ones are left out. Needs `--allow-env` for those names. */
export function readEnv(names: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/**
 * Prints, in Spanish, why a role could not start or had to stop, and exits with status 1: a typed error, a
 * Deno permission the role was not given, a file or folder the system does not let it use, a port in use.
 * Anything else is a bug and is rethrown, stack and all.
 */
export function exitOnStartupError(err: unknown): never {
  if (err instanceof TlsSetupError) {
    log.error(err.message, err.cause);
    Deno.exit(1);
  }
  if (err instanceof ColmenaError) {
    log.error(err.message, err.cause);
    Deno.exit(1);
  }
  if (err instanceof Deno.errors.NotCapable) {
    log.error(
      `Falta un permiso de Deno: ${err.message}. Las tareas de deno.json solo dejan leer y escribir ` +
        "bajo ./data (el worker, solo en <carpeta de datos>/blobs): use una carpeta de datos dentro de " +
        "./data, o ejecute el fichero con los permisos de la carpeta que quiera",
    );
    Deno.exit(1);
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    log.error(`El sistema no permite el acceso: ${err.message}`);
    Deno.exit(1);
  }
  if (err instanceof Deno.errors.AddrInUse) {
    log.error(`La dirección ya está en uso: ${err.message}`);
    Deno.exit(1);
  }
  throw err;
}

/**
 * Loads a role's configuration for its entry file: secrets from their `_FILE` variables, the merged
 * configuration, its secrets registered so that no log line prints them, a warning per secret typed as a
 * flag, and the message-signing key. Exits with status 2 on a bad configuration.
 */
export async function loadRoleConfig<R extends Role>(
  role: R,
  input: ConfigInput,
  command: string = role,
): Promise<{ config: ConfigOf<R>; signingKey: Uint8Array | undefined }> {
  try {
    const env = await readSecretFiles(role, input.env);
    const config = loadConfig(role, { args: input.args, env });
    registerConfigSecrets(config as unknown as Record<string, unknown>);
    for (const warning of secretFlagWarnings(role, input.args)) log.warn(warning);
    const signingKey = await loadSigningKey(
      config as {
        signingKeyFile?: string | undefined;
        signingKey?: string | undefined;
      },
    );
    return { config, signingKey };
  } catch (err) {
    exitOnConfigError(err, command);
  }
}
