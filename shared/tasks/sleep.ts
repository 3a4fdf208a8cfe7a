/**
 * The `sleep` task type: waits the given milliseconds.
 *
 * @module
 */
import { z } from "zod";
import { defineTask } from "../task_definition.ts";
import { parsedFail, parsedOk, parseInteger } from "../task_args.ts";

/** Longest `sleep` a client may ask for, in milliseconds. */
export const MAX_SLEEP_MS = 60_000;

const MAX_SIMULATED_SLEEP_MS = 20;

/** `sleep`: waits the given milliseconds (0–60000). */
export const sleepTask = defineTask({
  name: "sleep",
  description: "Esperar (milisegundos)",
  input: z.object({ ms: z.number().int().min(0).max(MAX_SLEEP_MS) }),
  output: z.object({ sleptMs: z.number().int().nonnegative() }),
  timeoutMs: MAX_SLEEP_MS + 10_000,
  handler: new URL("./sleep_handler.ts", import.meta.url),
  cli: {
    label: "esperar",
    aliases: ["esperar", "sleep"],
    usage: "<milisegundos>",
    parse: (args) => {
      if (args.length !== 1) {
        return parsedFail("Indique un solo número de milisegundos: enviar esperar 500");
      }
      const ms = parseInteger(args[0] ?? "", { min: 0, max: MAX_SLEEP_MS, what: "La espera" });
      return ms.ok ? parsedOk({ ms: ms.value }) : ms;
    },
    format: (out) => [`esperó:      ${out.sleptMs} ms`],
    bench: { ms: 0 },
    sample: (random) => ({ ms: Math.floor(random() * (MAX_SIMULATED_SLEEP_MS + 1)) }),
    // Timers may fire up to a millisecond early, and the worker rounds.
    verify: ({ ms }, out) =>
      out.sleptMs + 2 >= ms ? undefined : `esperó ${out.sleptMs} ms de ${ms}`,
  },
});
