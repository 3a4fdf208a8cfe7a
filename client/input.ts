/**
 * Line input for the menu: `prompt()` on a terminal, a line reader on piped input.
 *
 * Deno's `prompt()` returns `null` at once when stdin is not a terminal, so piped answers
 * (`printf '1\nhola\n0\n' | deno task cliente`) are read from `Deno.stdin.readable` instead.
 *
 * @module
 */
import { writeText } from "./output.ts";

/** Asks questions and reads one line per answer; `null` means the input has ended. */
export interface LineInput {
  /** Shows `question` and resolves with the answer, without its line end, or `null` at end of input. */
  ask(question: string): Promise<string | null>;
  /** Stops reading input. */
  close(): Promise<void>;
}

/** Input from the terminal through `prompt()`, which gives line editing. */
export function promptInput(): LineInput {
  return {
    ask: (question) => Promise.resolve(prompt(question)),
    close: () => Promise.resolve(),
  };
}

/**
 * Input read line by line from a byte stream; each question and its answer are written through `echo`,
 * so a transcript reads like a terminal session.
 */
export function streamInput(
  readable: ReadableStream<Uint8Array>,
  echo: (text: string) => void,
): LineInput {
  const reader = readable.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let ended = false;
  async function nextLine(): Promise<string | null> {
    for (;;) {
      const newline = buffer.indexOf("\n");
      if (newline !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        return line.endsWith("\r") ? line.slice(0, -1) : line;
      }
      if (ended) {
        if (buffer === "") return null;
        const last = buffer;
        buffer = "";
        return last;
      }
      const { value, done } = await reader.read();
      if (done) ended = true;
      else buffer += value;
    }
  }
  return {
    async ask(question) {
      echo(`${question} `);
      const line = await nextLine();
      echo(line === null ? "\n" : `${line}\n`);
      return line;
    },
    async close() {
      ended = true;
      await reader.cancel().catch(() => {});
    },
  };
}

/** The input of this process: `prompt()` when stdin is a terminal, a line reader otherwise. */
export function stdinInput(): LineInput {
  if (Deno.stdin.isTerminal()) return promptInput();
  return streamInput(Deno.stdin.readable, (text) => writeText(text));
}
