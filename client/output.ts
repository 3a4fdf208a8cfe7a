/**
 * Output of the `cliente` command besides `shared/log.ts`: exit statuses, raw text for progress bars and
 * prompts, and the Spanish report of a failure.
 *
 * @module
 */
import { ColmenaError, toColmenaError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import { connectFailureKind } from "./connect_error.ts";
import { formatError } from "./format.ts";
import { serverFlags } from "./send_feedback.ts";

/** Exit status of success. */
export const EXIT_OK = 0;
/** Exit status of a failure: no server, a server error, a failed task. */
export const EXIT_FAILURE = 1;
/** Exit status of bad arguments. */
export const EXIT_USAGE = 2;
/** Exit status after Ctrl-C (SIGINT), as shells report it: 128 + 2. */
export const EXIT_INTERRUPTED = 130;

const encoder = new TextEncoder();

/** Writes text as is (no line end added) to stdout or stderr, all of it. */
export function writeText(text: string, stream: "stdout" | "stderr" = "stdout"): void {
  const target = stream === "stdout" ? Deno.stdout : Deno.stderr;
  const bytes = encoder.encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += target.writeSync(bytes.subarray(offset));
}

/** Whether an error means the server could not be reached at all (nothing listening, unknown host). */
export function isConnectFailure(err: unknown): boolean {
  return err instanceof ColmenaError && err.code === "CONNECTION_CLOSED" &&
    (err.cause instanceof Deno.errors.ConnectionRefused ||
      err.cause instanceof Deno.errors.AddrNotAvailable ||
      (err.cause !== undefined && connectFailureKind(err.cause) !== "other"));
}

/**
 * The Spanish explanation of a failure, always `CÓDIGO: mensaje` (the one format of errors in every
 * command and the menu), with what to do when the server cannot be reached.
 */
export function describeFailure(
  err: unknown,
  server: { readonly host: string; readonly port: number },
): string {
  const error = toColmenaError(err);
  if (isConnectFailure(err)) {
    const hint = connectFailureKind(error.cause) === "name"
      ? "Compruebe el nombre en --host o COLMENA_HOST"
      : `¿Está en marcha? Arránquelo con: ${
        ["deno task -q servidor", serverFlags(server)].filter((s) => s !== "").join(" ")
      }`;
    return formatError({ code: error.code, message: `${error.message}. ${hint}` });
  }
  if (error.code === "CONNECTION_CLOSED") {
    return formatError({
      code: error.code,
      message: `${error.message} (${server.host}:${server.port}). ` +
        "Compruebe que el servidor sigue en marcha",
    });
  }
  return formatError(error);
}

/** What `estado`, `cancelar` and the menu say when the server knows no task with that id. */
export function describeMissingTask(taskId: string): string {
  return formatError({
    code: "NOT_FOUND",
    message: `No existe ninguna tarea con el id «${taskId}»`,
  });
}

/** Prints a failure to stderr; errors that are not colmena's own also get their cause chain. */
export function reportFailure(
  err: unknown,
  server: { readonly host: string; readonly port: number },
): void {
  const message = describeFailure(err, server);
  if (err instanceof ColmenaError) log.error(message);
  else log.error(message, err);
}
