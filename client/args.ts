/**
 * Pure parsing of what a person types: task and client kind names, numbers, integers and task arguments.
 *
 * Every parser returns a {@linkcode Parsed} value instead of throwing, so the menu can re-ask and the
 * command line can print the Spanish message and exit 2.
 *
 * @module
 */
import { CLIENT_KINDS, type ClientKind } from "../shared/protocol.ts";
import { MAX_HASH_ITERATIONS, MAX_SLEEP_MS, TASK_TYPES, type TaskType } from "../shared/tasks.ts";
import type { JsonValue, TaskRequest } from "./task_request.ts";

/** The outcome of parsing input: the value, or a Spanish message saying what is wrong. */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly message: string };

/** Spanish and English names of each task type, lower case and without accents. */
const TASK_ALIASES: Readonly<Record<string, TaskType>> = {
  texto: "text",
  text: "text",
  numeros: "numbers",
  numbers: "numbers",
  eco: "echo",
  echo: "echo",
  esperar: "sleep",
  sleep: "sleep",
  hash: "hash",
};

/** Spanish and English names of each client kind, lower case and without accents. */
const KIND_ALIASES: Readonly<Record<string, ClientKind>> = {
  web: "web",
  movil: "mobile",
  mobile: "mobile",
  cli: "cli",
};

/** The Spanish name of each task type, as the command line and the menu show it. */
export const TASK_TYPE_LABELS: Readonly<Record<TaskType, string>> = {
  text: "texto",
  numbers: "números",
  echo: "eco",
  sleep: "esperar",
  hash: "hash",
};

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

/** The task type a Spanish or English name stands for (`texto`, `números`, `sleep`…), if any. */
export function toTaskType(name: string): TaskType | undefined {
  const key = _normalize(name);
  return Object.hasOwn(TASK_ALIASES, key) ? TASK_ALIASES[key] : undefined;
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
export function parseTaskTypes(text: string): Parsed<TaskType[]> {
  return _parseList(text, {
    toValue: toTaskType,
    describe: (bad) =>
      bad === ""
        ? "Falta la lista de tipos de tarea"
        : `Tipo de tarea desconocido: «${bad}». Use ${TASK_TYPES.join(", ")}`,
  });
}

/** Parses one or more finite numbers separated by spaces, commas or semicolons (decimals with a point). */
export function parseNumbers(text: string): Parsed<number[]> {
  const tokens = text.split(/[\s,;]+/u).filter((token) => token !== "");
  if (tokens.length === 0) return _fail("Escriba al menos un número");
  const numbers: number[] = [];
  for (const token of tokens) {
    const value = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(token) ? Number(token) : NaN;
    if (!Number.isFinite(value)) {
      return _fail(
        `«${token}» no es un número. Escriba números separados por espacios o comas (decimales con punto)`,
      );
    }
    numbers.push(value);
  }
  return _ok(numbers);
}

/** Parses an integer within `[min, max]`; `what` names it in the message. */
export function parseInteger(
  text: string,
  range: { readonly min: number; readonly max: number; readonly what: string },
): Parsed<number> {
  const trimmed = text.trim();
  const value = /^[+-]?\d+$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!Number.isSafeInteger(value) || value < range.min || value > range.max) {
    return _fail(
      `${range.what} debe ser un número entero entre ${range.min} y ${range.max}, no «${trimmed}»`,
    );
  }
  return _ok(value);
}

/** Parses an echo message: JSON when it is valid JSON, the text itself otherwise. */
export function parseEchoMessage(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

/** Builds the task of `enviar <tipo> <args…>` from its arguments, or says what is wrong with them. */
export function parseTaskArgs(type: TaskType, args: readonly string[]): Parsed<TaskRequest> {
  const joined = args.join(" ");
  switch (type) {
    case "text":
      if (args.length === 0) return _fail('Falta el texto: enviar texto "hola mundo"');
      return _ok({ type, payload: { text: joined } });
    case "numbers": {
      const numbers = parseNumbers(joined);
      return numbers.ok ? _ok({ type, payload: { numbers: numbers.value } }) : numbers;
    }
    case "echo":
      if (args.length === 0) {
        return _fail("Falta el mensaje: enviar eco '{\"a\": 1}' o enviar eco hola");
      }
      return _ok({ type, payload: { message: parseEchoMessage(joined) } });
    case "sleep": {
      if (args.length !== 1) {
        return _fail("Indique un solo número de milisegundos: enviar esperar 500");
      }
      const ms = parseInteger(args[0] ?? "", { min: 0, max: MAX_SLEEP_MS, what: "La espera" });
      return ms.ok ? _ok({ type, payload: { ms: ms.value } }) : ms;
    }
    case "hash": {
      const [data, iterationsText, ...rest] = args;
      if (data === undefined) return _fail("Faltan los datos: enviar hash <datos> [iteraciones]");
      if (rest.length > 0) {
        return _fail('Demasiados argumentos: ponga los datos entre comillas, enviar hash "a b" 10');
      }
      if (iterationsText === undefined) return _ok({ type, payload: { data } });
      const iterations = parseInteger(iterationsText, {
        min: 1,
        max: MAX_HASH_ITERATIONS,
        what: "El número de iteraciones",
      });
      return iterations.ok
        ? _ok({ type, payload: { data, iterations: iterations.value } })
        : iterations;
    }
  }
}

/** A task whose text comes from a file: its type, the payload field the file's text fills, and the rest. */
export type FileTaskRequest =
  | { readonly type: "text"; readonly field: "text"; readonly payload: Record<never, never> }
  | {
    readonly type: "hash";
    readonly field: "data";
    readonly payload: { readonly iterations?: number };
  };

/**
 * Builds the task of `enviar <tipo> --archivo <fichero> <args…>`: `texto` takes no other argument, `hash`
 * an optional number of iterations; other types cannot read a file.
 */
export function parseFileTaskArgs(
  type: TaskType,
  args: readonly string[],
): Parsed<FileTaskRequest> {
  switch (type) {
    case "text":
      if (args.length > 0) {
        return _fail("Con --archivo, el texto es el del fichero: enviar texto --archivo libro.txt");
      }
      return _ok({ type, field: "text", payload: {} });
    case "hash": {
      const [iterationsText, ...rest] = args;
      if (rest.length > 0) {
        return _fail("Demasiados argumentos: enviar hash --archivo datos.txt [iteraciones]");
      }
      if (iterationsText === undefined) return _ok({ type, field: "data", payload: {} });
      const iterations = parseInteger(iterationsText, {
        min: 1,
        max: MAX_HASH_ITERATIONS,
        what: "El número de iteraciones",
      });
      return iterations.ok
        ? _ok({ type, field: "data", payload: { iterations: iterations.value } })
        : iterations;
    }
    default:
      return _fail(`--archivo solo sirve con texto y hash, no con ${TASK_TYPE_LABELS[type]}`);
  }
}
