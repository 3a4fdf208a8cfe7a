/**
 * The `echo` task type: returns the message it was given, any JSON value.
 *
 * @module
 */
import { isDeepStrictEqual } from "node:util";
import { z } from "zod";
import { defineTask, type Random } from "../task_definition.ts";
import { type JsonValue, parsedFail, parsedOk, parseJsonOrText, randomInt } from "../task_args.ts";
import { sampleNumbers } from "./numbers.ts";
import { sampleSentence } from "./text.ts";

function _sampleMessage(random: Random): JsonValue {
  switch (randomInt(random, 0, 3)) {
    case 0:
      return sampleSentence(random);
    case 1:
      return randomInt(random, -1_000_000, 1_000_000);
    case 2:
      return [true, null, sampleSentence(random), sampleNumbers(random)];
    default:
      return {
        id: crypto.randomUUID(),
        anidado: { nivel: randomInt(random, 1, 9), lista: sampleNumbers(random) },
        activo: random() < 0.5,
      };
  }
}

/** `echo`: returns the message it was given, any JSON value. */
export const echoTask = defineTask({
  name: "echo",
  description: "Eco (devuelve el mensaje)",
  input: z.object({ message: z.json() }),
  output: z.object({ message: z.json() }),
  timeoutMs: 10_000,
  handler: new URL("./echo_handler.ts", import.meta.url),
  cli: {
    label: "eco",
    aliases: ["eco", "echo"],
    usage: "<mensaje o JSON>",
    parse: (args) => {
      if (args.length === 0) {
        return parsedFail("Falta el mensaje: enviar eco '{\"a\": 1}' o enviar eco hola");
      }
      return parsedOk({ message: parseJsonOrText(args.join(" ")) });
    },
    format: (out) => [`mensaje:     ${JSON.stringify(out.message) ?? "null"}`],
    bench: { message: { saludo: "hola", n: 42, lista: [1, 2, 3] } },
    sample: (random) => ({ message: _sampleMessage(random) }),
    verify: (payload, out) =>
      isDeepStrictEqual(out.message, payload.message)
        ? undefined
        : "el eco no devuelve el mensaje enviado",
  },
});
