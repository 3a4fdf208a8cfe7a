/**
 * Pure parsing of what a person types: task and client kind names, numbers, integers and task arguments.
 *
 * Every parser returns a {@linkcode Parsed} value instead of throwing, so the menu can re-ask and the
 * command line can print the Spanish message and exit 2.
 *
 * @module
 */
import { CLIENT_KINDS, type ClientKind } from "../shared/protocol.ts";
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import { type JsonValue, parseJsonOrText } from "../shared/task_args.ts";
import type { Parsed } from "../shared/task_definition.ts";
import { TASK_TYPES, TASKS, type TaskType } from "../shared/tasks.ts";

export type { Parsed };

/** Spanish and English names of each client kind, lower case and without accents. */
const KIND_ALIASES: Readonly<Record<string, ClientKind>> = {
  web: "web",
  movil: "mobile",
  mobile: "mobile",
  cli: "cli",
};

/** The Spanish name of each built-in task type, as the command line and the menu show it. */
export const TASK_TYPE_LABELS: Readonly<Record<TaskType, string>> = Object.fromEntries(
  TASK_TYPES.map((type) => [type, TASKS[type].cli?.label ?? type]),
) as Record<TaskType, string>;

/** The Spanish name of a task type (its `cli.label`), or its name when it has none or is unknown. */
export function taskLabel(type: string, catalog: TaskCatalog = BUILTIN_CATALOG): string {
  return catalog.get(type)?.cli?.label ?? type;
}

/** The Spanish name of each client kind. */
export const CLIENT_KIND_LABELS: Readonly<Record<ClientKind, string>> = {
  web: "web",
  mobile: "móvil",
  cli: "cli",
};

function _ok<T>(value: T): Parsed<T> {
  return { ok: true, value };
}

function _fail<T>(message: string): Parsed<T> {
  return { ok: false, message };
}

function _normalize(name: string): string {
  return name.trim().toLowerCase().normalize("NFD").replace(/\p{Diacritic}/gu, "");
}

/**
 * The task type a name stands for: its wire name, its Spanish label or one of its aliases (`texto`,
 * `números`, `sleep`…), compared without case or accents; `undefined` when the catalogue has none.
 */
export function toTaskType(
  name: string,
  catalog: TaskCatalog = BUILTIN_CATALOG,
): string | undefined {
  if (catalog.has(name)) return name;
  const key = _normalize(name);
  for (const definition of catalog.definitions()) {
    const names = [
      definition.name,
      definition.cli?.label ?? "",
      ...(definition.cli?.aliases ?? []),
    ];
    if (names.some((n) => n !== "" && _normalize(n) === key)) return definition.name;
  }
  return undefined;
}

/** The wire client kind a name stands for (`movil` and `móvil` mean `mobile`), if any. */
export function toClientKind(name: string): ClientKind | undefined {
  const key = _normalize(name);
  return Object.hasOwn(KIND_ALIASES, key) ? KIND_ALIASES[key] : undefined;
}

function _parseList<T>(
  text: string,
  parse: {
    readonly toValue: (name: string) => T | undefined;
    readonly describe: (bad: string) => string;
  },
): Parsed<T[]> {
  const { toValue, describe } = parse;
  const names = text.split(",").map((name) => name.trim()).filter((name) => name !== "");
  if (names.length === 0) return _fail(describe(""));
  const values: T[] = [];
  for (const name of names) {
    const value = toValue(name);
    if (value === undefined) return _fail(describe(name));
    if (!values.includes(value)) values.push(value);
  }
  return _ok(values);
}

/** Parses a comma-separated list of client kinds (`web,movil`), without repeats. */
export function parseKinds(text: string): Parsed<ClientKind[]> {
  return _parseList(text, {
    toValue: toClientKind,
    describe: (bad) =>
      bad === ""
        ? "Falta la lista de tipos de cliente (web, movil, cli)"
        : `Tipo de cliente desconocido: «${bad}». Use ${CLIENT_KINDS.map(_kindName).join(", ")}`,
  });
}

function _kindName(kind: ClientKind): string {
  return kind === "mobile" ? "movil" : kind;
}

/** Parses a comma-separated list of task types, Spanish or English (`texto,numbers`), without repeats. */
export function parseTaskTypes(
  text: string,
  catalog: TaskCatalog = BUILTIN_CATALOG,
): Parsed<string[]> {
  return _parseList(text, {
    toValue: (name) => toTaskType(name, catalog),
    describe: (bad) =>
      bad === ""
        ? "Falta la lista de tipos de tarea"
        : `Tipo de tarea desconocido: «${bad}». Use ${
          catalog.names().map((type) => taskLabel(type, catalog)).join(", ")
        }`,
  });
}

export { parseInteger, parseNumbers } from "../shared/task_args.ts";

/** Parses an echo message: JSON when it is valid JSON, the text itself otherwise. */
export function parseEchoMessage(text: string): JsonValue {
  return parseJsonOrText(text);
}

/** A task to submit, of any type in the catalogue: its type and its payload, not yet validated. */
export interface AnyTaskRequest {
  readonly type: string;
  readonly payload: unknown;
}

/**
 * Builds the task of `enviar <tipo> <args…>`: with `--datos`, the payload is that JSON (any type);
 * otherwise the type's own argument parser builds it (`cli.parse`), and a type without one asks for
 * `--datos`.
 */
export function parseTaskArgs(
  type: string,
  args: readonly string[],
  options: { readonly catalog?: TaskCatalog; readonly datos?: string | undefined } = {},
): Parsed<AnyTaskRequest> {
  const catalog = options.catalog ?? BUILTIN_CATALOG;
  const definition = catalog.get(type);
  if (definition === undefined) return _fail(`Tipo de tarea desconocido: «${type}»`);
  if (options.datos !== undefined) {
    if (args.length > 0) {
      return _fail(`Con --datos no van más argumentos: enviar ${type} --datos '{"campo": 1}'`);
    }
    const payload = _parseDatos(options.datos);
    return payload.ok ? _ok({ type, payload: payload.value }) : payload;
  }
  const parse = definition.cli?.parse;
  if (parse === undefined) {
    return _fail(
      `Las tareas «${type}» se envían con --datos y su JSON: enviar ${type} --datos '{"campo": 1}'`,
    );
  }
  const payload = parse(args, { file: false });
  return payload.ok ? _ok({ type, payload: payload.value }) : payload;
}

function _parseDatos(text: string): Parsed<unknown> {
  try {
    return _ok(JSON.parse(text));
  } catch {
    return _fail(`--datos no es JSON válido: ${text.length > 60 ? text.slice(0, 59) + "…" : text}`);
  }
}

/** A task whose text comes from a file: its type, the payload field the file's text fills, and the rest. */
export interface FileTaskRequest {
  readonly type: string;
  readonly field: string;
  readonly payload: Record<string, unknown>;
}

/**
 * Builds the task of `enviar <tipo> --archivo <fichero> <args…>`: only types with a `fileField` take a
 * file; the rest of the payload comes from `--datos` or the type's own parser (e.g. `hash`'s iterations).
 */
export function parseFileTaskArgs(
  type: string,
  args: readonly string[],
  options: { readonly catalog?: TaskCatalog; readonly datos?: string | undefined } = {},
): Parsed<FileTaskRequest> {
  const catalog = options.catalog ?? BUILTIN_CATALOG;
  const definition = catalog.get(type);
  if (definition === undefined) return _fail(`Tipo de tarea desconocido: «${type}»`);
  const field = definition.fileField;
  if (field === undefined) {
    const takers = catalog.definitions().filter((d) => d.fileField !== undefined).map((d) =>
      d.cli?.label ?? d.name
    );
    return _fail(
      `--archivo solo sirve con ${takers.join(" y ")}, no con ${taskLabel(type, catalog)}`,
    );
  }
  let rest: Parsed<unknown>;
  if (options.datos !== undefined) rest = _parseDatos(options.datos);
  else if (definition.cli?.parse !== undefined) rest = definition.cli.parse(args, { file: true });
  else if (args.length > 0) {
    return _fail(
      `Con --archivo, el resto de los datos va en --datos: enviar ${type} --archivo f.txt`,
    );
  } else rest = _ok({});
  if (!rest.ok) return rest;
  const payload = rest.value;
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    return _fail("Con --archivo, --datos debe ser un objeto JSON");
  }
  return _ok({ type, field, payload: payload as Record<string, unknown> });
}
