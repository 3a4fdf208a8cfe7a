/**
 * Progress of a simulation: a bar redrawn in place on a terminal, or one line every 10 % otherwise.
 *
 * @module
 */
import type { SimulationProgress } from "./simulate.ts";

const BAR_WIDTH = 30;
const REDRAW_EVERY_MS = 80;

/** One line of progress bar, without `\r`: `[████░░░░]  45%  225/500  fallidas 0  406 tareas/s`. */
export function renderProgressBar(progress: SimulationProgress, width: number = BAR_WIDTH): string {
  const fraction = progress.total === 0 ? 1 : Math.min(1, progress.done / progress.total);
  const filled = Math.floor(fraction * width);
  const bar = "█".repeat(filled) + "░".repeat(width - filled);
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  const rate = progress.elapsedMs > 0 ? progress.done / (progress.elapsedMs / 1000) : 0;
  return `[${bar}] ${percent}  ${progress.done}/${progress.total}  fallidas ${progress.failed}  ${
    rate.toFixed(0)
  } tareas/s`;
}

/** One line of plain progress: `Progreso: 40 % (200/500 tareas, 0 fallidas)`. */
export function renderProgressLine(progress: SimulationProgress): string {
  const percent = progress.total === 0 ? 100 : Math.floor((progress.done / progress.total) * 100);
  return `Progreso: ${percent} % (${progress.done}/${progress.total} tareas, ${progress.failed} fallidas)`;
}

/** How progress is shown: a bar redrawn in place, a line every 10 %, or nothing. */
export type ProgressMode = "bar" | "lines" | "none";

/** Shows simulation progress through `write` (raw text, for the bar) or `line` (whole lines). */
export class ProgressReporter {
  readonly #mode: ProgressMode;
  readonly #write: (text: string) => void;
  readonly #line: (text: string) => void;
  #lastDraw = 0;
  #nextDecile = 1;
  #drawn = false;

  constructor(
    mode: ProgressMode,
    output: { readonly write: (text: string) => void; readonly line: (text: string) => void },
  ) {
    this.#mode = mode;
    this.#write = output.write;
    this.#line = output.line;
  }

  /** Takes the latest progress; draws it when due. */
  update(progress: SimulationProgress): void {
    if (this.#mode === "bar") {
      const now = performance.now();
      if (progress.done < progress.total && now - this.#lastDraw < REDRAW_EVERY_MS) return;
      this.#lastDraw = now;
      this.#drawn = true;
      this.#write(`\r\x1b[2K${renderProgressBar(progress)}`);
    } else if (this.#mode === "lines") {
      let due = false;
      while (this.#nextDecile <= 10 && progress.done * 10 >= progress.total * this.#nextDecile) {
        this.#nextDecile++;
        due = true;
      }
      if (due) this.#line(renderProgressLine(progress));
    }
  }

  /** Ends the bar's line, so that what follows starts on a fresh one. */
  finish(): void {
    if (this.#mode === "bar" && this.#drawn) this.#write("\n");
    this.#drawn = false;
  }
}
