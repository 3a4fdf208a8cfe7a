/**
 * NDJSON framing: splits a byte stream into lines with a byte cap, and guards JSON depth before parsing.
 *
 * @module
 */

/** Default longest line, in bytes, without its `\n`: 1 MiB. */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

/** One framed line, or the notice that a line went over the cap and was skipped up to its `\n`. */
export type Framed =
  | { readonly kind: "line"; readonly bytes: Uint8Array }
  | { readonly kind: "too_large"; readonly bytes: number };

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/**
 * Splits bytes into `\n`-terminated lines (a trailing `\r` is dropped), never holding more than `maxLineBytes`.
 *
 * A line longer than the cap yields one `too_large` notice and the rest of it is discarded until the next `\n`,
 * so the input resynchronises at the next line. A partial line left when the input ends is dropped: only
 * complete lines are frames. Plain (no stream machinery), so that an idle connection costs little; see
 * {@linkcode LineFramer} for the stream form.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  #parts: Uint8Array[] = [];
  #held = 0;
  #skipping = false;
  #skipped = 0;

  constructor(maxLineBytes: number = DEFAULT_MAX_LINE_BYTES) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 1) {
      throw new RangeError(
        `Cannot frame lines: maxLineBytes must be a positive integer, got ${maxLineBytes}`,
      );
    }
    this.#maxLineBytes = maxLineBytes;
  }

  /** Splits `chunk`, handing each complete line (or `too_large` notice) to `emit`, in order. */
  push(chunk: Uint8Array, emit: (framed: Framed) => void): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      const size = end - start;
      if (this.#skipping) {
        this.#skipped += size;
      } else if (this.#held + size > this.#maxLineBytes) {
        this.#skipping = true;
        this.#skipped = this.#held + size;
        this.#parts = [];
        this.#held = 0;
      } else if (nl !== -1) {
        let line: Uint8Array;
        if (this.#held === 0) {
          // A copy: the writer may reuse the chunk's buffer once we return.
          line = chunk.slice(start, end);
        } else {
          this.#parts.push(chunk.subarray(start, end));
          line = concat(this.#parts, this.#held + size);
          this.#parts = [];
          this.#held = 0;
        }
        if (line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN) {
          line = line.subarray(0, line.length - 1);
        }
        emit({ kind: "line", bytes: line });
      } else {
        // Copy: the caller may reuse the chunk's buffer after we return.
        this.#parts.push(chunk.slice(start, end));
        this.#held += size;
      }
      if (nl === -1) break;
      if (this.#skipping) {
        emit({ kind: "too_large", bytes: this.#skipped });
        this.#skipping = false;
        this.#skipped = 0;
      }
      start = nl + 1;
    }
  }
}

/** {@linkcode LineSplitter} as a `TransformStream`: bytes in, framed lines out. */
export class LineFramer extends TransformStream<Uint8Array, Framed> {
  constructor(maxLineBytes: number = DEFAULT_MAX_LINE_BYTES) {
    const splitter = new LineSplitter(maxLineBytes);
    super({
      transform(chunk, controller) {
        splitter.push(chunk, (framed) => controller.enqueue(framed));
      },
    });
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Default deepest JSON nesting accepted before parsing. */
export const DEFAULT_MAX_JSON_DEPTH = 64;

/**
 * Whether JSON text nests arrays/objects deeper than `limit`, scanning without parsing.
 *
 * Brackets inside strings do not count. Used before `JSON.parse`, so that deep input is refused cheaply
 * and never reaches a recursive schema.
 */
export function exceedsJsonDepth(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}
