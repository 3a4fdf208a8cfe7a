/**
 * Spanish sentences for configuration problems: one per option, naming it and what it takes.
 *
 * @module
 */
import type { z } from "zod";

/** Zod's internals as far as this module reads them (zod 4 `._zod.def`). */
interface SchemaDef {
  readonly type: string;
  readonly innerType?: SchemaLike;
  readonly out?: SchemaLike;
  readonly entries?: Record<string, string>;
  readonly element?: SchemaLike;
  readonly checks?: readonly { readonly _zod: { readonly def: CheckDef } }[];
}

interface CheckDef {
  readonly check: string;
  readonly value?: number;
  readonly inclusive?: boolean;
  readonly format?: string;
}

interface SchemaLike {
  readonly _zod: { readonly def: SchemaDef };
}

/** The schema inside defaults, optionals and pipes (`z.preprocess`). */
function _core(schema: SchemaLike): SchemaLike {
  let current = schema;
  for (let i = 0; i < 10; i++) {
    const def = current._zod.def;
    if ((def.type === "default" || def.type === "optional") && def.innerType) {
      current = def.innerType;
    } else if (def.type === "pipe" && def.out) current = def.out;
    else break;
  }
  return current;
}

function _numberRange(def: SchemaDef): string {
  const checks = (def.checks ?? []).map((c) => c._zod.def);
  const int = checks.some((c) => c.check === "number_format" && /int/.test(c.format ?? ""));
  let min: number | undefined;
  let minExclusive = false;
  let max: number | undefined;
  for (const c of checks) {
    if (c.value === undefined) continue;
    if (c.check === "greater_than") {
      const value = int && !c.inclusive ? c.value + 1 : c.value;
      if (min === undefined || value > min) {
        min = value;
        minExclusive = !int && c.inclusive === false;
      }
    } else if (c.check === "less_than") {
      const value = int && !c.inclusive ? c.value - 1 : c.value;
      if (max === undefined || value < max) max = value;
    }
  }
  const noun = int ? "un entero" : "un número";
  if (min !== undefined && max !== undefined) return `${noun} de ${min} a ${max}`;
  if (min === 1 && int) return "un entero positivo";
  if (min !== undefined) return `${noun} ${minExclusive ? "mayor que" : "desde"} ${min}`;
  if (max !== undefined) return `${noun} hasta ${max}`;
  return noun;
}

/**
 * What a configuration field takes, in Spanish (`un entero de 0 a 9`, `sqlite, postgres o memory`), read
 * from its schema; `undefined` for fields whose schema says too little (free text with a pattern).
 */
export function describeExpected(schema: z.ZodType): string | undefined {
  const core = _core(schema as unknown as SchemaLike);
  const def = core._zod.def;
  switch (def.type) {
    case "number":
      return _numberRange(def);
    case "enum": {
      const options = Object.values(def.entries ?? {});
      return options.length < 2
        ? options.join("")
        : `${options.slice(0, -1).join(", ")} o ${options.at(-1)}`;
    }
    case "union":
    case "boolean":
      return "true o false (o 1/0, yes/no)";
    default:
      return undefined;
  }
}

/**
 * One sentence for one problem: `--prioridad debe ser un entero de 0 a 9, no «alta»`. `where` names the
 * flag or variable the value came from; `takes` is what it takes (else zod's own message is kept).
 */
export function describeProblem(
  where: string,
  problem: { readonly value: unknown; readonly takes?: string | undefined; readonly issue: string },
): string {
  const shown = Array.isArray(problem.value) ? problem.value.join(",") : String(problem.value);
  const value = shown.length > 60 ? `${shown.slice(0, 59)}…` : shown;
  if (problem.value === undefined) return `${where}: ${problem.issue}`;
  if (problem.takes !== undefined) return `${where} debe ser ${problem.takes}, no «${value}»`;
  // A schema's own Spanish message that already says what it takes ("debe empezar por amqp://").
  if (/^debe /.test(problem.issue)) return `${where} ${problem.issue}, no «${value}»`;
  return `${where} no es válido («${value}»): ${problem.issue}`;
}

/** Edit distance between two words (insertions, deletions, substitutions, swaps of neighbours). */
function _distance(a: string, b: string): number {
  const rows = Array.from(
    { length: a.length + 1 },
    (_, i) => [i, ...Array<number>(b.length).fill(0)],
  );
  for (let j = 0; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      }
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * The candidate a mistyped word most likely meant (`enviat` → `enviar`), or `undefined` when none is
 * close: at most 2 edits, and fewer than half the word's letters.
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const key = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = _distance(key, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= 2 && bestDistance * 2 < key.length ? best : undefined;
}
