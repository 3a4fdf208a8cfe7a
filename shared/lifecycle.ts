/**
 * Process lifecycle helpers for the entry files: configuration failures and shutdown signals.
 *
 * @module
 */
import { ConfigError } from "./config.ts";
import * as log from "./log.ts";

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

/** Prints a configuration error and the usage in Spanish, then exits with status 2; rethrows anything else. */
export function exitOnConfigError(err: unknown, usage: string): never {
  if (err instanceof ConfigError) {
    log.error(err.message);
    log.info(usage);
    Deno.exit(2);
  }
  if (err instanceof Deno.errors.NotCapable) {
    log.error(`Falta un permiso al leer la configuración: ${err.message} (¿falta --allow-env?)`);
    Deno.exit(2);
  }
  throw err;
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
