/**
 * Text from the server (client and worker names, error messages, task outputs) made safe to print on a
 * terminal: control characters and bidirectional overrides are shown as visible escapes, so no server or
 * other client can move the cursor, recolour, retitle or reorder what a person reads.
 *
 * @module
 */

/** Control characters (C0, DEL, C1) and the bidirectional controls. */
const UNSAFE = /[\p{Cc}\p{Bidi_Control}]/gu;

/** `text` with each control character shown as an escape (`\x1b`, `\u202e`); printable text unchanged. */
export function displayText(text: string): string {
  return text.replace(UNSAFE, (ch) => {
    const code = ch.codePointAt(0) ?? 0;
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}
