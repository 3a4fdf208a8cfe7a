/**
 * A form built from a task type's input schema, for the interactive menu: one question per field of an
 * object schema, each answer read by the field's kind (text, number, yes/no, list, JSON) and checked
 * against the field's own schema, so a mistake is explained and asked again at once.
 *
 * @module
 */
import { z } from "zod";
import { parseJsonOrText, parseNumbers } from "../shared/task_args.ts";
import type { Parsed } from "../shared/task_definition.ts";

/** One question of a form: what to ask, and how to read the answer. */
export interface FormField {
  /** The payload field it fills; `undefined` for a form of one question that is the whole payload. */
  readonly key: string | undefined;
  /** The question, in Spanish, with its kind and whether it may be left empty. */
  readonly question: string;
  /** Reads an answer: the field's value, `undefined` to leave it out, or what is wrong. */
  readonly read: (answer: string) => Parsed<unknown>;
}

type JsonSchema = Record<string, unknown>;

function _kind(schema: JsonSchema): string {
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => String(v)).join("/");
  const type = schema.type;
  if (type === "string") return "texto";
  if (type === "integer") return "entero";
  if (type === "number") return "número";
  if (type === "boolean") return "sí/no";
  if (type === "array") {
    const items = (schema.items ?? {}) as JsonSchema;
    if (items.type === "number" || items.type === "integer") {
      return "números separados por espacios";
    }
    return "lista JSON";
  }
  return "JSON o texto";
}

function _value(schema: JsonSchema, answer: string): Parsed<unknown> {
  const text = answer.trim();
  switch (schema.type) {
    case "string":
      return { ok: true, value: answer };
    case "integer":
    case "number": {
      const numbers = parseNumbers(text);
      if (!numbers.ok) return numbers;
      return numbers.value.length === 1
        ? { ok: true, value: numbers.value[0] }
        : { ok: false, message: "Escriba un solo número" };
    }
    case "boolean":
      if (/^(s|si|sí|y|yes|true|1)$/i.test(text)) return { ok: true, value: true };
      if (/^(n|no|false|0)$/i.test(text)) return { ok: true, value: false };
      return { ok: false, message: "Responda sí o no" };
    case "array": {
      const items = (schema.items ?? {}) as JsonSchema;
      if ((items.type === "number" || items.type === "integer") && !text.startsWith("[")) {
        return parseNumbers(text);
      }
      return { ok: true, value: parseJsonOrText(text) };
    }
    default:
      return { ok: true, value: parseJsonOrText(answer) };
  }
}

function _field(key: string | undefined, schema: z.ZodType): FormField {
  const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchema;
  const optional = schema.safeParse(undefined).success;
  const fallback = json.default === undefined ? "" : ` [${JSON.stringify(json.default)}]`;
  const label = schema.description ?? key ?? "Datos";
  const question = `${label} (${_kind(json)}${optional ? ", opcional" : ""})${fallback}:`;
  return {
    key,
    question,
    read: (answer) => {
      if (answer.trim() === "") {
        if (optional) return { ok: true, value: undefined };
        if (json.type !== "string") return { ok: false, message: "Escriba un valor" };
        return { ok: false, message: `Escriba ${label}` };
      }
      const value = _value(json, answer);
      if (!value.ok) return value;
      const checked = schema.safeParse(value.value);
      if (checked.success) return { ok: true, value: value.value };
      // The field's own schema knows no path: name the field instead of «(raíz)».
      const message = checked.error.issues.slice(0, 3).map((issue) => issue.message).join("; ");
      return { ok: false, message: `${label}: ${message}` };
    },
  };
}

/**
 * The questions for a task type's input: one per field of an object schema, in declaration order; one
 * question for the whole payload (JSON) otherwise.
 */
export function formFields(input: z.ZodType): FormField[] {
  if (input instanceof z.ZodObject) {
    return Object.entries(input.shape as Record<string, z.ZodType>).map(([key, schema]) =>
      _field(key, schema)
    );
  }
  return [_field(undefined, input)];
}

/** Builds the payload from the form's answers (fields left out stay out). */
export function payloadFrom(fields: readonly FormField[], values: readonly unknown[]): unknown {
  if (fields.length === 1 && fields[0]?.key === undefined) return values[0];
  const payload: Record<string, unknown> = {};
  fields.forEach((field, i) => {
    if (field.key !== undefined && values[i] !== undefined) payload[field.key] = values[i];
  });
  return payload;
}
