/**
 * The `numbers` task type: count, sum, average, minimum and maximum of one or more finite numbers.
 *
 * @module
 */
import { z } from "zod";
import { defineTask, type Random } from "../task_definition.ts";
import { parsedOk, parseNumbers, randomInt } from "../task_args.ts";

/** Up to 20 numbers, some of them with decimals, for the simulated workload. */
export function sampleNumbers(random: Random): number[] {
  return Array.from(
    { length: randomInt(random, 1, 20) },
    () =>
      random() < 0.2 ? randomInt(random, -100_000, 100_000) / 100 : randomInt(random, -1000, 1000),
  );
}

function _close(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

/** `numbers`: count, sum, average, minimum and maximum of one or more finite numbers. */
export const numbersTask = defineTask({
  name: "numbers",
  description: "Analizar números (suma, media, mínimo, máximo)",
  input: z.object({ numbers: z.array(z.number()).min(1) }),
  output: z.object({
    count: z.number().int().positive(),
    sum: z.number(),
    avg: z.number(),
    min: z.number(),
    max: z.number(),
  }),
  timeoutMs: 30_000,
  handler: new URL("./numbers_handler.ts", import.meta.url),
  cli: {
    label: "números",
    aliases: ["numeros", "numbers"],
    usage: "<n1> <n2> …",
    parse: (args) => {
      const numbers = parseNumbers(args.join(" "));
      return numbers.ok ? parsedOk({ numbers: numbers.value }) : numbers;
    },
    format: (out) => [
      `cantidad:    ${out.count}`,
      `suma:        ${out.sum}`,
      `media:       ${out.avg}`,
      `mínimo:      ${out.min}`,
      `máximo:      ${out.max}`,
    ],
    bench: { numbers: [3, 1, 4, 1, 5, 9, 2, 6, 5, 3] },
    sample: (random) => ({ numbers: sampleNumbers(random) }),
    verify: ({ numbers }, out) => {
      const sum = numbers.reduce((a, b) => a + b, 0);
      if (out.count !== numbers.length) {
        return `cantidad ${out.count}, se esperaba ${numbers.length}`;
      }
      if (!_close(out.sum, sum)) return `suma ${out.sum}, se esperaba ${sum}`;
      if (!_close(out.avg, sum / numbers.length)) return `media ${out.avg} incorrecta`;
      if (out.min !== Math.min(...numbers)) return `mínimo ${out.min} incorrecto`;
      if (out.max !== Math.max(...numbers)) return `máximo ${out.max} incorrecto`;
      return undefined;
    },
  },
});
