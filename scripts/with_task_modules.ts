/**
 * Starts a role with read access to the user's task modules, and to nothing else beyond its own grants.
 *
 * Deno fixes a process's permissions at start, but where a user keeps `--tareas` modules is only known
 * from the role's arguments. So `deno task servidor|worker` runs this launcher with the role's whole
 * command after `--`; it adds each task module's folder (and colmena's `mod.ts`, which task modules
 * import) to the command's `--allow-read`, runs it with this process's standard streams, forwards SIGTERM
 * (Ctrl-C's SIGINT reaches the role by itself), and exits with its status.
 *
 * Usage: `deno run --allow-run=deno --allow-read=. --allow-env=COLMENA_TAREAS
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

/**
 * The role's command with read access added for the folders of `modules` and colmena's `mod.ts`: appended
 * to its `--allow-read=` list (or added before the entry file when it has none; a bare `--allow-read`
 * already allows everything). For `deno compile`, the folders are also `--include`d in the binary and the
 * `--tareas` arguments baked into it become absolute paths.
 */
export function withReadAccess(
  command: readonly string[],
  options: { readonly modules: readonly string[]; readonly cwd: string },
): string[] {
  if (options.modules.length === 0) return [...command];
  const folders = options.modules.map((m) => dirname(isAbsolute(m) ? m : resolve(options.cwd, m)));
  const extra = [...new Set([...folders, resolve(options.cwd, "mod.ts")])];
  const out = [...command];
  const entry = () => out.findIndex((part) => /\.ts$/.test(part) && !part.startsWith("-"));
  if (out[1] === "compile") {
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
    out.splice(first === -1 ? out.length : first, 0, ...extra.map((path) => `--include=${path}`));
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
  const [, ...args] = withReadAccess(command, { modules, cwd: Deno.cwd() });
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
