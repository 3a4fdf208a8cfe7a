/**
 * Parsing of the words a person types as a task's arguments: numbers, bounded integers and JSON values.
 *
 * Task modules use these in their `cli.parse`; each returns a {@linkcode Parsed} value instead of throwing,
 * so the menu can ask again and the command line can print the Spanish message and exit 2.
 *
 * @module
 */
import type { Parsed, Random } from "./task_definition.ts";

/** Any JSON value. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue };

/** A successful parse. */
export function parsedOk<T>(value: T): Parsed<T> {
  return { ok: true, value };
}

/** A failed parse, with its Spanish message. */
export function parsedFail<T>(message: string): Parsed<T> {
  return { ok: false, message };
}

/** Parses one or more finite numbers separated by spaces, commas or semicolons (decimals with a point). */
export function parseNumbers(text: string): Parsed<number[]> {
  const tokens = text.split(/[\s,;]+/u).filter((token) => token !== "");
  if (tokens.length === 0) return parsedFail("Escriba al menos un número");
  const numbers: number[] = [];
  for (const token of tokens) {
    const value = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(token) ? Number(token) : NaN;
    if (!Number.isFinite(value)) {
      return parsedFail(
        `«${token}» no es un número. Escriba números separados por espacios o comas (decimales con punto)`,
      );
    }
    numbers.push(value);
  }
  return parsedOk(numbers);
}

/** Parses an integer within `[min, max]`; `what` names it in the message. */
export function parseInteger(
  text: string,
  range: { readonly min: number; readonly max: number; readonly what: string },
): Parsed<number> {
  const trimmed = text.trim();
  const value = /^[+-]?\d+$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!Number.isSafeInteger(value) || value < range.min || value > range.max) {
    return parsedFail(
      `${range.what} debe ser un número entero entre ${range.min} y ${range.max}, no «${trimmed}»`,
    );
  }
  return parsedOk(value);
}

/** Parses a JSON value when the text is valid JSON; otherwise the text itself. */
export function parseJsonOrText(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

/** A whole number in `[min, max]` from a source of random numbers, for sample payloads. */
export function randomInt(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}
