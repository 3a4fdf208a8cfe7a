/**
 * The `simular` subcommand: runs {@linkcode simulate} with progress, then prints the summary.
 *
 * @module
 */
import * as log from "../shared/log.ts";
import { CLIENT_KIND_LABELS, parseKinds, parseTaskTypes, taskLabel } from "./args.ts";
import { catalogOf, type CliSettings, tlsOptionsOf, usageError } from "./commands.ts";
import { simulatedTypes } from "./workload.ts";
import { plural } from "./format.ts";
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, reportFailure, writeText } from "./output.ts";
import { type ProgressMode, ProgressReporter } from "./progress.ts";
import { DEFAULT_WINDOW, simulate } from "./simulate.ts";
import { formatSummary } from "./summary.ts";

/** A second SIGINT within this many milliseconds of the first is the same Ctrl-C, delivered twice. */
const REPEATED_SIGNAL_MS = 1_000;

/** How to show progress: on stdout unless `--json` owns it, as a bar only on a terminal. */
function _progressMode(json: boolean): { mode: ProgressMode; stream: "stdout" | "stderr" } {
  if (!json) return { mode: Deno.stdout.isTerminal() ? "bar" : "lines", stream: "stdout" };
  return { mode: Deno.stderr.isTerminal() ? "bar" : "none", stream: "stderr" };
}

/**
 * `simular`: many concurrent clients; prints the summary (or `--json`); fails when any task failed or was
 * cancelled. Ctrl-C stops it: the partial summary of the tasks ended so far is printed and it exits 130;
 * a second Ctrl-C exits at once.
 */
export async function runSimulate(config: CliSettings, args: readonly string[]): Promise<number> {
  const catalog = catalogOf(config);
  if (args.length > 0) {
    return usageError(
      `simular no admite argumentos («${
        args.join(" ")
      }»); use --clientes, --num-tareas, --tipos y --tareas-tipos`,
    );
  }
  const kinds = parseKinds(config.tipos);
  if (!kinds.ok) return usageError(kinds.message);
  let types = simulatedTypes(catalog);
  if (config.tareasTipos !== undefined) {
    const parsed = parseTaskTypes(config.tareasTipos, catalog);
    if (!parsed.ok) return usageError(parsed.message);
    const unsimulated = parsed.value.filter((type) => !types.includes(type));
    if (unsimulated.length > 0) {
      return usageError(
        `No se pueden simular tareas ${unsimulated.join(", ")}: su módulo no da datos de ejemplo ` +
          "(cli.sample en defineTask)",
      );
    }
    types = parsed.value;
  }
  const { mode, stream } = _progressMode(config.json);
  const progress = new ProgressReporter(mode, {
    write: (text) => writeText(text, stream),
    line: (text) => log.info(text),
  });
  if (!config.json) {
    log.info(
      `Simulando ${plural(config.clientes, "cliente", "clientes")} (${
        kinds.value.map((kind) => CLIENT_KIND_LABELS[kind]).join(", ")
      }) con ${plural(config.numTareas, "tarea", "tareas")} (${
        types.map((type) => taskLabel(type, catalog)).join(", ")
      }) contra ${config.host}:${config.port}`,
    );
  }
  const interrupt = new AbortController();
  let interruptedAt = 0;
  const onInterrupt = (): void => {
    if (interrupt.signal.aborted) {
      // Under `deno task`, one Ctrl-C can arrive twice: from the terminal to the whole process group, and
      // forwarded by `deno task`. Only a later one means "exit now".
      if (performance.now() - interruptedAt > REPEATED_SIGNAL_MS) Deno.exit(EXIT_INTERRUPTED);
      return;
    }
    interruptedAt = performance.now();
    progress.finish();
    log.warn(
      "Interrumpida (Ctrl-C): se resume lo terminado hasta ahora; Ctrl-C otra vez para salir ya",
    );
    interrupt.abort();
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    const summary = await simulate({
      host: config.host,
      port: config.port,
      ...(config.token === undefined ? {} : { token: config.token }),
      tls: tlsOptionsOf(config),
      clients: config.clientes,
      kinds: kinds.value,
      tasks: config.numTareas,
      types,
      catalog,
      window: DEFAULT_WINDOW,
      priority: config.prioridad,
      onProgress: (p) => progress.update(p),
      signal: interrupt.signal,
    });
    progress.finish();
    log.info(config.json ? JSON.stringify(summary) : "\n" + formatSummary(summary, catalog));
    if (summary.interrupted) return EXIT_INTERRUPTED;
    return summary.failed === 0 && summary.cancelled === 0 ? EXIT_OK : EXIT_FAILURE;
  } catch (err) {
    progress.finish();
    reportFailure(err, config);
    return EXIT_FAILURE;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}
