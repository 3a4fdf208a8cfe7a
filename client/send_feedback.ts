/**
 * What `cliente enviar` says while it works: the task's id once accepted, upload progress for `--archivo`, a
 * waiting indicator on a terminal, and what Ctrl-C leaves behind (the task stays queued) and how to follow it.
 *
 * Everything here goes to stderr, so that `--json` keeps stdout to one JSON line.
 *
 * @module
 */
import { formatBytes } from "./format.ts";
import { writeText } from "./output.ts";

/** The server the command line talks to, as given (`--host`, `--port`). */
export interface ServerAddress {
  readonly host: string;
  readonly port: number;
}

const DEFAULT_HOST = "localhost";
const DEFAULT_PORT = 8888;
const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/** Files at least this large report progress in lines when stderr is not a terminal. */
const LINE_PROGRESS_MIN_BYTES = 1024 * 1024;

/** `--host H --port P` for the options that are not the defaults, to repeat in a printed command. */
export function serverFlags(server: ServerAddress): string {
  const flags: string[] = [];
  if (server.host !== DEFAULT_HOST) flags.push(`--host ${server.host}`);
  if (server.port !== DEFAULT_PORT) flags.push(`--port ${server.port}`);
  return flags.join(" ");
}

/** A `deno task -q cliente …` command for a hint, keeping `--host`/`--port` when they are not the defaults. */
export function clientCommand(server: ServerAddress, args: string): string {
  return ["deno task -q cliente", serverFlags(server), args].filter((s) => s !== "").join(" ");
}

/** The hint printed when Ctrl-C stops `enviar` from waiting: the task goes on, and how to follow it. */
export function interruptHint(taskId: string, server: ServerAddress): string {
  return `Interrumpido: la tarea ${taskId} sigue en cola (Ctrl-C solo deja de esperar). ` +
    `Sígala con: ${clientCommand(server, `estado ${taskId}`)}`;
}

/** Options of {@linkcode SendFeedback}. */
export interface SendFeedbackOptions {
  readonly server: ServerAddress;
  /** Whether stderr is a terminal: then progress and waiting are redrawn in place. */
  readonly terminal: boolean;
  /** Writes raw text to stderr. @defaultValue `writeText(text, "stderr")` */
  readonly write?: (text: string) => void;
  /** Called on Ctrl-C while waiting, after the hint is printed. @defaultValue exits with 130 */
  readonly onInterrupt?: () => void;
}

/** The feedback of one `enviar`: call {@linkcode upload} (for a file), {@linkcode accepted}, then {@linkcode done}. */
export class SendFeedback {
  readonly #options: SendFeedbackOptions;
  readonly #write: (text: string) => void;
  #timer: ReturnType<typeof setInterval> | undefined;
  #sigint: (() => void) | undefined;
  #drawn = false;

  constructor(options: SendFeedbackOptions) {
    this.#options = options;
    this.#write = options.write ?? ((text) => writeText(text, "stderr"));
  }

  /**
   * Counts the bytes of a file as the upload reads them and shows `Subiendo: 1,5 MiB de 5,0 MiB (30 %)`:
   * redrawn on a terminal, otherwise a line at each quarter for files of 1 MiB or more.
   */
  upload(stream: ReadableStream<Uint8Array>, total: number): ReadableStream<Uint8Array> {
    let sent = 0;
    let nextQuarter = 1;
    let lastDraw = 0;
    const show = (final: boolean) => {
      const percent = total === 0 ? 100 : Math.floor((sent / total) * 100);
      const text = `Subiendo: ${formatBytes(sent)} de ${formatBytes(total)} (${percent} %)`;
      if (this.#options.terminal) {
        const now = performance.now();
        if (!final && now - lastDraw < 100) return;
        lastDraw = now;
        this.#write(`\r\x1b[2K${text}`);
        this.#drawn = true;
        if (final) this.#clear();
      } else if (total >= LINE_PROGRESS_MIN_BYTES) {
        let due = false;
        while (nextQuarter <= 4 && sent * 4 >= total * nextQuarter) {
          nextQuarter++;
          due = true;
        }
        if (due) this.#write(`${text}\n`);
      }
    };
    return stream.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          sent += chunk.length;
          controller.enqueue(chunk);
          show(false);
        },
        flush() {
          show(true);
        },
      }),
    );
  }

  /**
   * Says the task was accepted (`Aceptada: <id> (en cola)`), then, on a terminal, shows how long it has
   * waited; Ctrl-C from now on prints {@linkcode interruptHint} and stops waiting.
   */
  accepted(taskId: string): void {
    // Listen before saying so: a Ctrl-C right after the line must already get the hint.
    this.#sigint = () => {
      // The hint is written while this listener still holds SIGINT: once it is removed, a second Ctrl-C
      // would end the process before the hint is out.
      this.#stopIndicator();
      this.#write(`${interruptHint(taskId, this.#options.server)}\n`);
      this.done();
      (this.#options.onInterrupt ?? (() => Deno.exit(130)))();
    };
    try {
      Deno.addSignalListener("SIGINT", this.#sigint);
    } catch {
      // no signals here (Windows without a console): Ctrl-C ends the process as usual
      this.#sigint = undefined;
    }
    this.#write(`Aceptada: ${taskId} (en cola)\n`);
    if (!this.#options.terminal) return;
    const start = performance.now();
    let frame = 0;
    this.#timer = setInterval(() => {
      const seconds = Math.floor((performance.now() - start) / 1000);
      this.#write(
        `\r\x1b[2K${SPINNER[frame++ % SPINNER.length]} Esperando el resultado… ${seconds} s ` +
          "(Ctrl-C deja de esperar; la tarea sigue)",
      );
      this.#drawn = true;
    }, 120);
  }

  /** Stops the indicator and clears the line it drew. */
  #stopIndicator(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#clear();
  }

  /** Stops the indicator and the Ctrl-C handling, and clears the line it drew. */
  done(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#sigint !== undefined) Deno.removeSignalListener("SIGINT", this.#sigint);
    this.#sigint = undefined;
    this.#clear();
  }

  #clear(): void {
    if (this.#drawn) this.#write("\r\x1b[2K");
    this.#drawn = false;
  }
}
