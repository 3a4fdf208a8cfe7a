/**
 * A task type described for other programs: its names, limits and input and output as JSON Schema. The
 * client's `tipos --json` prints it, and the server's browser client builds its forms from it.
 *
 * @module
 */
import { z } from "zod";
import { TaskCatalog } from "./catalog.ts";
import type { AnyTaskDefinition } from "./task_definition.ts";

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
