/**
 * The `tipos` subcommand: every task type this client knows (built-in and from `--tareas` modules), with
 * its input and output as JSON Schema (`--json-schema`), so clients in other languages can be generated.
 *
 * @module
 */
import * as log from "../shared/log.ts";
import { describeTaskType } from "../shared/task_description.ts";
import { catalogOf, type CliSettings, usageError } from "./commands.ts";
import { formatMs, formatTable } from "./format.ts";
import { EXIT_OK } from "./output.ts";

export { describeTaskType };
export type { TaskTypeDescription } from "../shared/task_description.ts";

/** `tipos [--json-schema] [--json]`: prints the loaded task types. */
export function runTypes(config: CliSettings, args: readonly string[]): number {
  if (args.length > 0) return usageError(`tipos no admite argumentos («${args.join(" ")}»)`);
  const types = catalogOf(config).definitions().map(describeTaskType);
  if (config.json) {
    log.info(JSON.stringify(types));
    return EXIT_OK;
  }
  if (config.jsonSchema) {
    log.info(JSON.stringify(
      Object.fromEntries(types.map((t) => [t.name, { input: t.input, output: t.output }])),
      null,
      2,
    ));
    return EXIT_OK;
  }
  log.info(formatTable(
    ["tipo", "nombre", "origen", "tiempo máx.", "fichero", "descripción"],
    types.map((t) => [
      t.name,
      t.label,
      t.builtin ? "incorporada" : "propia",
      formatMs(t.timeoutMs),
      t.fileField ?? "—",
      t.description,
    ]),
  ));
  log.info("\nEsquemas de entrada y salida (JSON Schema): deno task cliente tipos --json-schema");
  return EXIT_OK;
}
