/**
 * The simulated workload: varied tasks of each type, and the check that each output matches its input.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { TASKS, type TaskType } from "../shared/tasks.ts";
import type { JsonValue, TaskRequest } from "./task_request.ts";

/** A source of random numbers in `[0, 1)`, like `Math.random`. */
export type Random = () => number;

const SENTENCES = [
  "hola mundo",
  "la colmena trabaja sin descanso",
  "¿Cuántas abejas caben en un panal?",
  "El veloz murciélago hindú comía feliz cardillo y kiwi",
  "  espacios   al principio y al final  ",
  "ñandú, pingüino y cigüeña",
  "una sola",
  "🐝 zumbido 🍯 miel",
  "Tres tristes tigres tragaban trigo en un trigal",
  "línea uno\nlínea dos\ttabulada",
];

const MAX_SIMULATED_SLEEP_MS = 20;
const MAX_SIMULATED_HASH_ITERATIONS = 50;

function _int(random: Random, [min, max]: readonly [number, number]): number {
  return min + Math.floor(random() * (max - min + 1));
}

function _pick<T>(random: Random, items: readonly T[]): T {
  return items[_int(random, [0, items.length - 1])]!;
}

function _randomNumbers(random: Random): number[] {
  const length = _int(random, [1, 20]);
  return Array.from(
    { length },
    () => random() < 0.2 ? _int(random, [-100_000, 100_000]) / 100 : _int(random, [-1000, 1000]),
  );
}

function _randomMessage(random: Random): JsonValue {
  switch (_int(random, [0, 3])) {
    case 0:
      return _pick(random, SENTENCES);
    case 1:
      return _int(random, [-1_000_000, 1_000_000]);
    case 2:
      return [true, null, _pick(random, SENTENCES), _randomNumbers(random)];
    default:
      return {
        id: crypto.randomUUID(),
        anidado: { nivel: _int(random, [1, 9]), lista: _randomNumbers(random) },
        activo: random() < 0.5,
      };
  }
}

/** A task of the given type with a varied, small payload. */
export function makeTask(type: TaskType, random: Random = Math.random): TaskRequest {
  switch (type) {
    case "text": {
      const count = _int(random, [1, 3]);
      const text = Array.from({ length: count }, () => _pick(random, SENTENCES)).join(" ");
      return { type, payload: { text } };
    }
    case "numbers":
      return { type, payload: { numbers: _randomNumbers(random) } };
    case "echo":
      return { type, payload: { message: _randomMessage(random) } };
    case "sleep":
      return { type, payload: { ms: _int(random, [0, MAX_SIMULATED_SLEEP_MS]) } };
    case "hash":
      return {
        type,
        payload: {
          data: `${_pick(random, SENTENCES)} #${_int(random, [0, 1_000_000])}`,
          iterations: _int(random, [1, MAX_SIMULATED_HASH_ITERATIONS]),
        },
      };
  }
}

/** Words as the `text` task counts them: runs of non-whitespace. */
export function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed === "" ? 0 : trimmed.split(/\s+/u).length;
}

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

function _reverseGraphemes(text: string): string {
  return Array.from(graphemes.segment(text), ({ segment }) => segment).reverse().join("");
}

/** SHA-256 of the UTF-8 data, iterated over the raw digest; lowercase hex, as the `hash` task does. */
export function iteratedSha256(data: string, iterations: number): string {
  let digest = createHash("sha256").update(data, "utf8").digest();
  for (let done = 1; done < iterations; done++) {
    digest = createHash("sha256").update(digest).digest();
  }
  return digest.toString("hex");
}

const BAD_SHAPE = "la salida no tiene la forma de su tipo de tarea";

function _close(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

/** Checks an output against the task that produced it; returns a Spanish description of the first mismatch. */
export function verifyOutput(request: TaskRequest, output: unknown): string | undefined {
  switch (request.type) {
    case "text": {
      const parsed = TASKS.text.output.safeParse(output);
      if (!parsed.success) return BAD_SHAPE;
      const out = parsed.data;
      const { text } = request.payload;
      const words = countWords(text);
      if (out.words !== words) return `palabras ${out.words}, se esperaban ${words}`;
      if (out.upper !== text.toUpperCase()) return "las mayúsculas no coinciden";
      if (out.reversed !== _reverseGraphemes(text)) return "el texto invertido no coincide";
      return undefined;
    }
    case "numbers": {
      const parsed = TASKS.numbers.output.safeParse(output);
      if (!parsed.success) return BAD_SHAPE;
      const out = parsed.data;
      const { numbers } = request.payload;
      const sum = numbers.reduce((a, b) => a + b, 0);
      if (out.count !== numbers.length) {
        return `cantidad ${out.count}, se esperaba ${numbers.length}`;
      }
      if (!_close(out.sum, sum)) return `suma ${out.sum}, se esperaba ${sum}`;
      if (!_close(out.avg, sum / numbers.length)) return `media ${out.avg} incorrecta`;
      if (out.min !== Math.min(...numbers)) return `mínimo ${out.min} incorrecto`;
      if (out.max !== Math.max(...numbers)) return `máximo ${out.max} incorrecto`;
      return undefined;
    }
    case "echo": {
      const parsed = TASKS.echo.output.safeParse(output);
      if (!parsed.success) return BAD_SHAPE;
      const out = parsed.data;
      return isDeepStrictEqual(out.message, request.payload.message)
        ? undefined
        : "el eco no devuelve el mensaje enviado";
    }
    case "sleep": {
      const parsed = TASKS.sleep.output.safeParse(output);
      if (!parsed.success) return BAD_SHAPE;
      const out = parsed.data;
      // Timers may fire up to a millisecond early, and the worker rounds.
      return out.sleptMs + 2 >= request.payload.ms
        ? undefined
        : `esperó ${out.sleptMs} ms de ${request.payload.ms}`;
    }
    case "hash": {
      const parsed = TASKS.hash.output.safeParse(output);
      if (!parsed.success) return BAD_SHAPE;
      const out = parsed.data;
      const { data, iterations = 1 } = request.payload;
      const expected = iteratedSha256(data, iterations);
      return out.sha256 === expected ? undefined : "el hash no coincide";
    }
  }
}
