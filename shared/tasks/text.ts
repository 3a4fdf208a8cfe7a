/**
 * The `text` task type: word count, text reversed by grapheme clusters, and upper case.
 *
 * @module
 */
import { z } from "zod";
import { defineTask, type Random } from "../task_definition.ts";
import { parsedFail, parsedOk } from "../task_args.ts";

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** Whitespace-separated word count, grapheme-wise reversal and upper case. */
export function processText(text: string): { words: number; reversed: string; upper: string } {
  const trimmed = text.trim();
  const words = trimmed === "" ? 0 : trimmed.split(/\s+/u).length;
  const clusters: string[] = [];
  for (const { segment } of graphemes.segment(text)) clusters.push(segment);
  return { words, reversed: clusters.reverse().join(""), upper: text.toUpperCase() };
}

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

/** A sentence of the simulated workload. */
export function sampleSentence(random: Random): string {
  return SENTENCES[Math.floor(random() * SENTENCES.length)]!;
}

/**
 * Largest `text` payload, in bytes of its JSON (a file's bytes count too): processing holds about 30 times
 * the text in memory, so larger texts are refused at submit with `INVALID_PAYLOAD`.
 */
export const MAX_TEXT_BYTES = 8 * 1024 * 1024;

/**
 * Largest `text` output, in bytes of its JSON: the text twice (reversed and in upper case), with room for
 * escaped characters. Each task on an uploaded file stores one such output.
 */
export const MAX_TEXT_OUTPUT_BYTES = 3 * MAX_TEXT_BYTES;

/** Texts up to this many characters run on the worker's event loop; longer ones in a capped thread. */
export const INLINE_TEXT_CHARS = 64 * 1024;

/** `text`: word count, text reversed by grapheme clusters, and upper case. */
export const textTask = defineTask({
  name: "text",
  description: "Procesar texto (palabras, invertido, mayúsculas)",
  input: z.object({ text: z.string() }),
  output: z.object({
    words: z.number().int().nonnegative(),
    reversed: z.string(),
    upper: z.string(),
  }),
  timeoutMs: 30_000,
  limits: { maxPayloadBytes: MAX_TEXT_BYTES, maxOutputBytes: MAX_TEXT_OUTPUT_BYTES },
  handler: new URL("./text_handler.ts", import.meta.url),
  // A long text runs in a thread with a memory cap (`--memoria-tarea-mb`) that its timeout can end.
  isolated: { inlineWhen: ({ text }) => text.length <= INLINE_TEXT_CHARS },
  fileField: "text",
  cli: {
    label: "texto",
    aliases: ["texto", "text"],
    usage: '"<texto>"',
    parse: (args, { file }) => {
      if (file) {
        return args.length > 0
          ? parsedFail(
            "Con --archivo, el texto es el del fichero: enviar texto --archivo libro.txt",
          )
          : parsedOk({});
      }
      if (args.length === 0) return parsedFail('Falta el texto: enviar texto "hola mundo"');
      return parsedOk({ text: args.join(" ") });
    },
    format: (out) => [
      `palabras:    ${out.words}`,
      `invertido:   ${out.reversed}`,
      `mayúsculas:  ${out.upper}`,
    ],
    bench: { text: "La colmena reparte tareas entre sus obreras sin perder ninguna" },
    sample: (random) => {
      const count = 1 + Math.floor(random() * 3);
      return { text: Array.from({ length: count }, () => sampleSentence(random)).join(" ") };
    },
    verify: ({ text }, out) => {
      const expected = processText(text);
      if (out.words !== expected.words) {
        return `palabras ${out.words}, se esperaban ${expected.words}`;
      }
      if (out.upper !== expected.upper) return "las mayúsculas no coinciden";
      if (out.reversed !== expected.reversed) return "el texto invertido no coincide";
      return undefined;
    },
  },
});
