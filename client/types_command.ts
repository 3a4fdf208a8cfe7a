/**
 * The `tipos` subcommand: every task type this client knows (built-in and from `--tareas` modules), with
 * its input and output as JSON Schema (`--json-schema`), so clients in other languages can be generated.
 *
 * @module
 */
import { z } from "zod";
import * as log from "../shared/log.ts";
import { TaskCatalog } from "../shared/catalog.ts";
import type { AnyTaskDefinition } from "../shared/task_definition.ts";
import { catalogOf, type CliSettings, usageError } from "./commands.ts";
import { formatMs, formatTable } from "./format.ts";
import { EXIT_OK } from "./output.ts";

/** A task type as `tipos --json` prints it; `input` and `output` are JSON Schema (draft 2020-12). */
export interface TaskTypeDescription {
  readonly name: string;
  readonly label: string;
  readonly description: string;
  readonly builtin: boolean;
  readonly timeoutMs: number;
  readonly maxPayloadBytes: number | null;
  readonly maxOutputBytes: number | null;
  readonly fileField: string | null;
  readonly isolated: boolean;
  readonly input: Record<string, unknown>;
  readonly output: Record<string, unknown>;
}

/** The JSON Schema of a zod schema, as clients send (`io: "input"`) or receive (`"output"`) it. */
export function jsonSchemaOf(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  return z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<string, unknown>;
}

/** Describes one task type, its schemas as JSON Schema. */
export function describeTaskType(definition: AnyTaskDefinition): TaskTypeDescription {
  return {
    name: definition.name,
    label: definition.cli?.label ?? definition.name,
    description: definition.description,
    builtin: TaskCatalog.isBuiltin(definition),
    timeoutMs: definition.timeoutMs,
    maxPayloadBytes: definition.limits.maxPayloadBytes ?? null,
    maxOutputBytes: definition.limits.maxOutputBytes ?? null,
    fileField: definition.fileField ?? null,
    isolated: definition.isolated !== false,
    input: jsonSchemaOf(definition.input, "input"),
    output: jsonSchemaOf(definition.output, "output"),
  };
}

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
