/**
 * The `hash` task type: SHA-256 of the UTF-8 data, iterated over the raw digest.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { defineTask } from "../task_definition.ts";
import { parsedFail, parsedOk, parseInteger } from "../task_args.ts";
import { sampleSentence } from "./text.ts";

/** Most SHA-256 iterations a `hash` task may ask for. */
export const MAX_HASH_ITERATIONS = 1_000_000;

/**
 * Largest `hash` payload, in bytes of its JSON (a file's bytes count too): the worker holds the data as a
 * string while it hashes it.
 */
export const MAX_HASH_BYTES = 64 * 1024 * 1024;

/** `hash` chains this long or shorter run on the worker's event loop; longer ones run in a thread. */
export const INLINE_HASH_ITERATIONS = 1_000;

const MAX_SIMULATED_HASH_ITERATIONS = 50;

/** SHA-256 of the UTF-8 data, then again over each previous raw 32-byte digest; lowercase hex. */
export function iteratedSha256(data: string, iterations: number): string {
  let digest = createHash("sha256").update(data, "utf8").digest();
  for (let done = 1; done < iterations; done++) {
    digest = createHash("sha256").update(digest).digest();
  }
  return digest.toString("hex");
}

function _iterations(text: string) {
  return parseInteger(text, {
    min: 1,
    max: MAX_HASH_ITERATIONS,
    what: "El número de iteraciones",
  });
}

/**
 * `hash`: SHA-256 of the UTF-8 data, iterated over the raw digest; lowercase hex. The CPU-bound type: long
 * chains run in a thread, which a timeout terminates.
 */
export const hashTask = defineTask({
  name: "hash",
  description: "Hash SHA-256 (con iteraciones)",
  input: z.object({
    data: z.string(),
    iterations: z.number().int().min(1).max(MAX_HASH_ITERATIONS).default(1),
  }),
  output: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  timeoutMs: 60_000,
  limits: { maxPayloadBytes: MAX_HASH_BYTES },
  handler: new URL("./hash_handler.ts", import.meta.url),
  isolated: { inlineWhen: ({ iterations }) => iterations <= INLINE_HASH_ITERATIONS },
  fileField: "data",
  cli: {
    label: "hash",
    aliases: ["hash"],
    usage: "<datos> [iteraciones]",
    parse: (args, { file }) => {
      if (file) {
        const [iterationsText, ...rest] = args;
        if (rest.length > 0) {
          return parsedFail("Demasiados argumentos: enviar hash --archivo datos.txt [iteraciones]");
        }
        if (iterationsText === undefined) return parsedOk({});
        const iterations = _iterations(iterationsText);
        return iterations.ok ? parsedOk({ iterations: iterations.value }) : iterations;
      }
      const [data, iterationsText, ...rest] = args;
      if (data === undefined) {
        return parsedFail("Faltan los datos: enviar hash <datos> [iteraciones]");
      }
      if (rest.length > 0) {
        return parsedFail(
          'Demasiados argumentos: ponga los datos entre comillas, enviar hash "a b" 10',
        );
      }
      if (iterationsText === undefined) return parsedOk({ data });
      const iterations = _iterations(iterationsText);
      return iterations.ok ? parsedOk({ data, iterations: iterations.value }) : iterations;
    },
    format: (out) => [`sha256:      ${out.sha256}`],
    bench: { data: "colmena", iterations: 1 },
    sample: (random) => ({
      data: `${sampleSentence(random)} #${Math.floor(random() * 1_000_001)}`,
      iterations: 1 + Math.floor(random() * MAX_SIMULATED_HASH_ITERATIONS),
    }),
    verify: ({ data, iterations = 1 }, out) =>
      out.sha256 === iteratedSha256(data, iterations) ? undefined : "el hash no coincide",
  },
});
