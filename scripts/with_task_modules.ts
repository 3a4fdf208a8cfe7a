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
 * Usage: `deno run --allow-run=deno --allow-read=. --allow-env=COLMENA_TAREAS,<TLS_FILE_OPTIONS' env>
 * scripts/with_task_modules.ts -- deno run <permisos> server.ts [argumentos del rol…]`.
 *
 * @module
 */
import { dirname, isAbsolute, resolve } from "node:path";

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
  const [, ...args] = withReadAccess(command, { modules, cwd: Deno.cwd(), files });
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
