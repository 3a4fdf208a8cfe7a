/**
 * Starts a role with read access to the user's task modules and TLS files, and to nothing else beyond its
 * own grants.
 *
 * Deno fixes a process's permissions at start, but where a user keeps `--tareas` modules or TLS
 * certificates is only known from the role's arguments. So `deno task servidor|worker` runs this launcher
 * with the role's whole command after `--`; it adds each task module's folder (and colmena's `mod.ts`,
 * which task modules import) and each file named by a TLS option ({@linkcode TLS_FILE_OPTIONS}) to the
 * command's `--allow-read`, runs it with this process's standard streams, forwards SIGTERM
 * (Ctrl-C's SIGINT reaches the role by itself), and exits with its status.
 *
 * For `deno run` of the server or the worker it also narrows the role's permissions to what its
 * configuration calls for (see `role_permissions.ts`): `--allow-net` names the hosts it talks to, the
 * secret files it was given (`AMQP_URL_FILE`, `--clave-firma-fichero`…) become readable, and the worker's
 * `./data/blobs` becomes its configured blob folder. When the configuration does not load, the command is
 * left as it is and the role reports the problem itself.
 *
 * The launcher itself runs with plain `--allow-read` and `--allow-env` (it reads the role's configuration
 * as the role will): its `--allow-run=deno` already lets it start deno with any permission.
 *
 * Usage: `deno run --allow-run=deno --allow-read --allow-env scripts/with_task_modules.ts -- deno run
 * <permisos> server.ts [argumentos del rol…]`.
 *
 * @module
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { envNames, loadConfig, secretFileEnvPairs, type WorkerConfig } from "../shared/config.ts";
import { readEnv } from "../shared/lifecycle.ts";
import { readSecretFiles } from "../shared/secrets.ts";
import { netAllowList, secretFiles, workerBlobFolder } from "./role_permissions.ts";

/** The task module paths a role's arguments and environment name (`--tareas X`, `--tareas=X`, `COLMENA_TAREAS`). */
export function taskModulePaths(args: readonly string[], env: string | undefined): string[] {
  const paths: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg === "--tareas" && args[i + 1] !== undefined) paths.push(args[++i]!);
    else if (arg.startsWith("--tareas=")) paths.push(arg.slice("--tareas=".length));
  }
  // As the role's configuration: flags rank above the environment.
  const listed = paths.length > 0 ? paths : (env ?? "").split(",");
  return listed.flatMap((p) => p.split(",")).map((p) => p.trim()).filter((p) => p !== "");
}

/** Options whose value is a file the role reads (certificates, keys, CAs), with their variables. */
export const TLS_FILE_OPTIONS: readonly { readonly flag: string; readonly env: string }[] = [
  { flag: "--tls-cert", env: "COLMENA_TLS_CERT" },
  { flag: "--tls-key", env: "COLMENA_TLS_KEY" },
  { flag: "--tls-ca-clientes", env: "COLMENA_TLS_CA_CLIENTES" },
  { flag: "--amqp-ca", env: "AMQP_CA_FILE" },
  { flag: "--database-ca", env: "DATABASE_CA_FILE" },
];

/** The files a role's TLS options name (`--tls-cert X`, `--tls-cert=X`, or the variable without the flag). */
export function tlsFilePaths(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): string[] {
  const paths: string[] = [];
  for (const { flag, env: name } of TLS_FILE_OPTIONS) {
    let value: string | undefined;
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      if (arg === "--") break;
      if (arg === flag && args[i + 1] !== undefined) value = args[++i];
      else if (arg.startsWith(`${flag}=`)) value = arg.slice(flag.length + 1);
    }
    value ??= env[name];
    if (value !== undefined && value.trim() !== "") paths.push(value.trim());
  }
  return paths;
}

/**
 * The role's command with read access added for the folders of `modules` and colmena's `mod.ts`, and for
 * `files` (TLS certificates, keys and CAs) themselves: appended to its `--allow-read=` list (or added before the entry file when it has none; a bare `--allow-read`
 * already allows everything). For `deno compile`, the folders are also `--include`d in the binary and the
 * `--tareas` arguments baked into it become absolute paths.
 */
export function withReadAccess(
  command: readonly string[],
  options: {
    readonly modules: readonly string[];
    readonly cwd: string;
    /** Files the role reads besides (TLS certificates, keys and CAs). */
    readonly files?: readonly string[];
  },
): string[] {
  const files = (options.files ?? []).map((f) => resolve(options.cwd, f));
  if (options.modules.length === 0 && files.length === 0) return [...command];
  const folders = options.modules.map((m) => dirname(isAbsolute(m) ? m : resolve(options.cwd, m)));
  const moduleReads = options.modules.length === 0
    ? []
    : [...new Set([...folders, resolve(options.cwd, "mod.ts")])];
  const extra = [...moduleReads, ...files];
  const out = [...command];
  const entry = () => out.findIndex((part) => /\.ts$/.test(part) && !part.startsWith("-"));
  if (out[1] === "compile" && moduleReads.length > 0) {
    // A compiled role carries its task modules inside, and its arguments name them by absolute path.
    const first = entry();
    for (let i = first + 1; first !== -1 && i < out.length; i++) {
      if (out[i] === "--tareas" && out[i + 1] !== undefined) {
        out[i + 1] = resolve(options.cwd, out[i + 1]!);
      } else if (out[i]!.startsWith("--tareas=")) {
        out[i] = `--tareas=${
          out[i]!.slice("--tareas=".length).split(",").map((p) => resolve(options.cwd, p.trim()))
            .join(",")
        }`;
      }
    }
    out.splice(
      first === -1 ? out.length : first,
      0,
      ...moduleReads.map((path) => `--include=${path}`),
    );
  }
  const at = out.findIndex((part) => part === "--allow-read" || part.startsWith("--allow-read="));
  if (at !== -1) {
    if (out[at] !== "--allow-read") out[at] = `${out[at]},${extra.join(",")}`;
    return out;
  }
  const first = entry();
  out.splice(first === -1 ? out.length : first, 0, `--allow-read=${extra.join(",")}`);
  return out;
}

/** What {@linkcode withRolePermissions} grants besides the command's own flags. */
export interface RolePermissions {
  /** Hosts for `--allow-net` (a plain `--allow-net` is replaced by this list). */
  readonly net?: readonly string[] | undefined;
  /** Files to add to `--allow-read`. */
  readonly reads?: readonly string[] | undefined;
  /** The worker's blob folder, in place of `./data/blobs` in `--allow-read` and `--allow-write`. */
  readonly blobFolder?: string | undefined;
}

/** The role's command with its permissions narrowed or widened as `permissions` says. */
export function withRolePermissions(
  command: readonly string[],
  permissions: RolePermissions,
): string[] {
  const { net, reads = [], blobFolder } = permissions;
  return command.map((part) => {
    if (part === "--allow-net" && net !== undefined && net.length > 0) {
      return `--allow-net=${net.join(",")}`;
    }
    const flag = ["--allow-read=", "--allow-write="].find((f) => part.startsWith(f));
    if (flag === undefined) return part;
    let list = part.slice(flag.length).split(",");
    if (blobFolder !== undefined) list = list.map((p) => p === "./data/blobs" ? blobFolder : p);
    if (flag === "--allow-read=") list.push(...reads);
    return `${flag}${[...new Set(list)].join(",")}`;
  });
}

/** The permissions the role's configuration calls for; `{}` when it does not load. */
async function _rolePermissions(entry: string, roleArgs: string[]): Promise<RolePermissions> {
  const role = /(^|\/)server\.ts$/.test(entry)
    ? "servidor"
    : /(^|\/)worker\.ts$/.test(entry)
    ? "worker"
    : undefined;
  if (role === undefined) return {};
  try {
    const raw = readEnv(envNames(role));
    const env = await readSecretFiles(role, raw);
    const config = loadConfig(role, { args: roleArgs, env });
    const files = secretFileEnvPairs(role).map(([, file]) => file);
    return {
      net: netAllowList(role, config),
      reads: secretFiles(config, raw, files),
      ...(role === "worker"
        ? { blobFolder: workerBlobFolder(config as WorkerConfig, Deno.cwd()) }
        : {}),
    };
  } catch {
    return {};
  }
}

if (import.meta.main) {
  const split = Deno.args.indexOf("--");
  const command = split === -1 ? [] : Deno.args.slice(split + 1);
  const [program, ...rest] = command;
  if (program === undefined) {
    // deno-lint-ignore no-console
    console.error("Uso: with_task_modules.ts -- deno run <permisos> <rol.ts> [argumentos…]");
    Deno.exit(2);
  }
  const entry = rest.findIndex((part) => /\.ts$/.test(part));
  const roleArgs = entry === -1 ? [] : rest.slice(entry + 1);
  const modules = taskModulePaths(roleArgs, Deno.env.get("COLMENA_TAREAS"));
  const env = Object.fromEntries(TLS_FILE_OPTIONS.map((o) => [o.env, Deno.env.get(o.env)]));
  const files = tlsFilePaths(roleArgs, env);
  let full = withReadAccess(command, { modules, cwd: Deno.cwd(), files });
  if (rest[0] === "run" && entry !== -1) {
    full = withRolePermissions(full, await _rolePermissions(rest[entry]!, roleArgs));
  }
  const [, ...args] = full;
  const child = new Deno.Command(program, {
    args,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // Ctrl-C reaches the whole process group, the role included: forwarding it would be a second signal,
  // which makes the role exit at once. SIGTERM comes to this process alone (`deno task` forwards it).
  Deno.addSignalListener("SIGINT", () => {});
  Deno.addSignalListener("SIGTERM", () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // it has already ended
    }
  });
  const status = await child.status;
  const signals: Record<string, number> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  Deno.exit(status.signal === null ? status.code : 128 + (signals[status.signal] ?? 1));
}
