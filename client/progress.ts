/**
 * Progress of a simulation: a bar redrawn in place on a terminal, or one line every 10 % otherwise.
 *
 * @module
 */
import { formatNumber, formatPercent, formatRate, plural } from "./format.ts";
import type { SimulationProgress } from "./simulate.ts";

const BAR_WIDTH = 30;
const REDRAW_EVERY_MS = 80;

/** The tasks per second so far. */
function _rate(progress: SimulationProgress): number {
  return progress.elapsedMs > 0 ? progress.done / (progress.elapsedMs / 1000) : 0;
}

/** Seconds for an estimate: `45 s`, `2 min 05 s`, `1 h 02 min`. */
export function formatEta(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  const two = (n: number): string => String(n).padStart(2, "0");
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${two(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${two(Math.floor((s % 3600) / 60))} min`;
}

/** How long is left at the rate so far: `quedan ~12 s`; `quedan ?` before any task has ended. */
export function estimateRemaining(progress: SimulationProgress): string {
  const left = Math.max(0, progress.total - progress.done);
  if (left === 0) return "quedan 0 s";
  const rate = _rate(progress);
  return rate > 0 ? `quedan ~${formatEta(left / rate)}` : "quedan ?";
}

function _fraction(progress: SimulationProgress): number {
  return progress.total === 0 ? 1 : Math.min(1, progress.done / progress.total);
}

/**
 * One line of progress bar, without `\r`:
 * `[████░░░░]  45 %  225/500  fallidas 0  406.0 tareas/s  quedan ~1 s`.
 */
export function renderProgressBar(progress: SimulationProgress, width: number = BAR_WIDTH): string {
  const fraction = _fraction(progress);
  const filled = Math.floor(fraction * width);
  const bar = "█".repeat(filled) + "░".repeat(width - filled);
  return `[${bar}] ${formatPercent(fraction).padStart(5)}  ${formatNumber(progress.done)}/${
    formatNumber(progress.total)
  }  fallidas ${formatNumber(progress.failed)}  ${formatRate(_rate(progress))}  ${
    estimateRemaining(progress)
  }`;
}

/** One line of plain progress: `Progreso: 40 % (200/500 tareas, 0 fallidas, quedan ~3 s)`. */
export function renderProgressLine(progress: SimulationProgress): string {
  return `Progreso: ${formatPercent(_fraction(progress))} (${formatNumber(progress.done)}/${
    formatNumber(progress.total)
  } tareas, ${plural(progress.failed, "fallida", "fallidas")}, ${estimateRemaining(progress)})`;
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
  #finished = false;

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
    if (this.#finished) return;
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

  /** Ends the bar's line, so that what follows starts on a fresh one; later updates draw nothing. */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#mode === "bar" && this.#drawn) this.#write("\n");
    this.#drawn = false;
  }
}
