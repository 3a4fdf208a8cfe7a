/**
 * Secrets at start-up: reading them from files (`AMQP_URL_FILE`, `--clave-firma-fichero`…), registering them
 * so the log never prints them, and warning when one was typed on the command line.
 *
 * @module
 */
import { ConfigError, type Role, secretFileEnvPairs, secretFlags } from "./config.ts";
import { registerSecrets, urlSecrets } from "./redact.ts";

/**
 * `env` with each secret whose `<name>_FILE` is set read from that file (a final line break dropped), read
 * once at start-up. Setting both a secret and its `_FILE` variable is an error.
 * @throws {ConfigError} naming the variable whose file cannot be read.
 */
export async function readSecretFiles(
  role: Role,
  env: Readonly<Record<string, string | undefined>>,
): Promise<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = { ...env };
  const problems: string[] = [];
  for (const [name, fileName] of secretFileEnvPairs(role)) {
    const path = env[fileName];
    if (path === undefined || path === "") continue;
    if (env[name] !== undefined && env[name] !== "") {
      problems.push(`${name} y ${fileName} están definidas a la vez: use solo una`);
      continue;
    }
    try {
      out[name] = (await Deno.readTextFile(path)).replace(/\r?\n$/, "");
    } catch (cause) {
      problems.push(`${fileName}: no se puede leer «${path}» (${_reason(cause)})`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems.join("\n"));
  return out;
}

/** The shared message-signing key of a configuration: from its file, else from the environment. */
export async function loadSigningKey(
  config: {
    readonly signingKeyFile?: string | undefined;
    readonly signingKey?: string | undefined;
  },
): Promise<Uint8Array | undefined> {
  if (config.signingKeyFile !== undefined && config.signingKey !== undefined) {
    throw new ConfigError(
      "--clave-firma-fichero (COLMENA_SIGNING_KEY_FILE) y COLMENA_SIGNING_KEY están definidas a la vez: use solo una",
    );
  }
  if (config.signingKey !== undefined) return new TextEncoder().encode(config.signingKey);
  if (config.signingKeyFile === undefined) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(config.signingKeyFile);
  } catch (cause) {
    throw new ConfigError(
      `--clave-firma-fichero: no se puede leer «${config.signingKeyFile}» (${_reason(cause)})`,
    );
  }
  let end = bytes.length;
  while (end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d)) end--;
  const key = bytes.subarray(0, end);
  if (key.length < 32) {
    throw new ConfigError(
      `--clave-firma-fichero: la clave de «${config.signingKeyFile}» debe tener al menos 32 bytes`,
    );
  }
  registerSecrets([new TextDecoder().decode(key)]);
  return key;
}

/** The secret values a configuration holds; registered so that no log line prints them. */
export function registerConfigSecrets(config: Readonly<Record<string, unknown>>): void {
  const text = (key: string) => typeof config[key] === "string" ? config[key] as string : undefined;
  const urls = [text("amqpUrl"), text("databaseUrl")].filter((u) => u !== undefined);
  registerSecrets([
    ...urls.flatMap((u) => urlSecrets(u)),
    text("awsSecretAccessKey"),
    text("awsSessionToken"),
    text("signingKey"),
  ]);
}

/**
 * Spanish warnings for secrets given as flags (`deno task` without `-q` prints its command line, and `ps`
 * shows it to every user of the machine), each naming the variable to use instead.
 */
export function secretFlagWarnings(role: Role, args: readonly string[]): string[] {
  const warnings: string[] = [];
  for (const { flag, env, kind } of secretFlags(role)) {
    const at = args.findIndex((a) => a === `--${flag}` || a.startsWith(`--${flag}=`));
    if (at === -1) continue;
    const arg = args[at]!;
    const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : args[at + 1] ?? "";
    if (kind === "url" && urlSecrets(value).length === 0) continue;
    warnings.push(
      `--${flag} lleva un secreto en la línea de órdenes, que \`deno task\` (sin -q) imprime y \`ps\` ` +
        `muestra: use ${env} o ${env}_FILE`,
    );
  }
  return warnings;
}

function _reason(cause: unknown): string {
  return cause instanceof Error ? cause.name : "error";
}
