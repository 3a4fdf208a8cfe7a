/**
 * The one-shot subcommands of `cliente`: `enviar`, `estado`, `cancelar` and `ping`.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { ColmenaError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import type { ClientConfig } from "../shared/config.ts";
import type { SubmitOptions } from "../shared/protocol.ts";
import { parseFileTaskArgs, parseTaskArgs, taskLabel, toTaskType } from "./args.ts";
import {
  formatCancel,
  formatMs,
  formatResult,
  formatTaskView,
  resultToJson,
  type SavedOutput,
} from "./format.ts";
import { describeMissingTask, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, reportFailure } from "./output.ts";
import { TaskClient, type TaskResult } from "./task_client.ts";
import { SendFeedback } from "./send_feedback.ts";
import type { ClientTlsOptions } from "./tls.ts";
import { submitTask } from "./task_request.ts";

/** The command line's settings: its configuration, and the catalogue of task types it has loaded. */
export type CliSettings = ClientConfig & { readonly catalog?: TaskCatalog };

/** The catalogue of the command line: built-in plus `--tareas` modules. */
export function catalogOf(config: CliSettings): TaskCatalog {
  return config.catalog ?? BUILTIN_CATALOG;
}

/** A client connection configured from the command line; results are checked against its catalogue. */
export function openClient(config: CliSettings): TaskClient {
  return new TaskClient({
    host: config.host,
    port: config.port,
    ...tlsOptionsOf(config),
    kind: config.kind,
    name: config.name,
    ...(config.token === undefined ? {} : { token: config.token }),
    tasks: catalogOf(config).definitions(),
  });
}

/** The TLS options the command line gives (`--tls`, `--ca`, `--cert`, `--key`). */
export function tlsOptionsOf(config: ClientConfig): ClientTlsOptions {
  return { tls: config.tls, ca: config.ca, cert: config.cert, key: config.key };
}

/** Reports bad arguments in Spanish, with the subcommand's usage when given; returns the usage exit status. */
export function usageError(message: string, usage?: string): number {
  const how = usage === undefined ? "" : `\n  Uso: cliente ${usage}`;
  log.error(`${message}${how}\n  Ayuda: deno task -q cliente --help`);
  return EXIT_USAGE;
}

function _typeNames(catalog: TaskCatalog): string {
  return catalog.names().map((type) => taskLabel(type, catalog)).join(", ");
}

/**
 * `enviar <tipo> <args…>`: submits one task, says it was accepted, waits for its result and prints it.
 * With `--archivo`, the file is streamed to the server in pieces (with progress) and its text becomes the
 * task's text (or `hash` data); with `--salida`, the whole output is written to that file as JSON, and
 * that path is checked before anything is sent. A large output is printed summed up. `--intentos` and
 * `--timeout-ms` set the task's attempts and its time per attempt.
 */
export async function runSend(config: CliSettings, args: readonly string[]): Promise<number> {
  const catalog = catalogOf(config);
  const [typeName, ...rest] = args;
  if (typeName === undefined) return usageError(`Falta el tipo de tarea: ${_typeNames(catalog)}`);
  const type = toTaskType(typeName, catalog);
  if (type === undefined) {
    return usageError(`Tipo de tarea desconocido: «${typeName}». Use ${_typeNames(catalog)}`);
  }
  if (config.salida !== undefined) {
    const problem = await checkOutputPath(config.salida);
    if (problem !== undefined) return usageError(problem);
  }
  if (config.archivo !== undefined) return await _sendFile(config, config.archivo, type, rest);
  const request = parseTaskArgs(type, rest, { catalog, datos: config.datos });
  if (!request.ok) return usageError(request.message);
  await using client = openClient(config);
  const feedback = _feedback(config);
  try {
    const start = performance.now();
    const taskId = await submitTask(client, request.value, submitOptions(config));
    feedback.accepted(taskId);
    const result = await client.result(taskId);
    feedback.done();
    return await _printResult(config, result, performance.now() - start);
  } catch (err) {
    feedback.done();
    reportFailure(err, config);
    return EXIT_FAILURE;
  }
}

/** The submit options of `enviar`: `--prioridad`, `--intentos` and `--timeout-ms`. */
export function submitOptions(config: ClientConfig): SubmitOptions {
  return {
    priority: config.prioridad,
    ...(config.intentos === undefined ? {} : { maxAttempts: config.intentos }),
    ...(config.timeoutMs === undefined ? {} : { timeoutMs: config.timeoutMs }),
  };
}

/**
 * Why `--salida` cannot be written, in Spanish, checked before submitting: its folder must exist and the
 * path must not be a folder; `undefined` when it looks writable.
 */
export async function checkOutputPath(path: string): Promise<string | undefined> {
  try {
    if ((await Deno.stat(path)).isDirectory) {
      return `--salida «${path}» es una carpeta; dé la ruta de un fichero, p. ej. ${
        join(path, "resultado.json")
      }`;
    }
    return undefined;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      return _describeFileError("escribir", path, err, "--allow-write");
    }
  }
  const folder = dirname(path);
  try {
    if (!(await Deno.stat(folder)).isDirectory) {
      return `--salida «${path}»: «${folder}» no es una carpeta`;
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      return `--salida «${path}»: no existe la carpeta «${folder}»; créela antes o elija otra`;
    }
    return _describeFileError("escribir", path, err, "--allow-write");
  }
  return undefined;
}

function _feedback(config: CliSettings): SendFeedback {
  return new SendFeedback({
    server: config,
    terminal: Deno.stderr.isTerminal(),
  });
}

async function _sendFile(
  config: CliSettings,
  path: string,
  type: string,
  args: readonly string[],
): Promise<number> {
  const request = parseFileTaskArgs(type, args, {
    catalog: catalogOf(config),
    datos: config.datos,
  });
  if (!request.ok) return usageError(request.message, "enviar texto --archivo <fichero>");
  let file: Deno.FsFile;
  let size: number;
  try {
    file = await Deno.open(path, { read: true });
    const info = await file.stat();
    if (!info.isFile) {
      file.close();
      log.error(`«${path}» no es un fichero`);
      return EXIT_FAILURE;
    }
    size = info.size;
  } catch (err) {
    log.error(_describeFileError("leer", path, err, "--allow-read"));
    return EXIT_FAILURE;
  }
  await using client = openClient(config);
  const feedback = _feedback(config);
  try {
    const start = performance.now();
    const { type: fileType, field, payload } = request.value;
    // The file streams: its readable is read piece by piece as the upload goes, and closes the file.
    const taskId = await client.submitFileUnchecked(
      fileType,
      field,
      feedback.upload(file.readable, size),
      payload,
      submitOptions(config),
    );
    feedback.accepted(taskId);
    const result = await client.result(taskId);
    feedback.done();
    return await _printResult(config, result, performance.now() - start);
  } catch (err) {
    feedback.done();
    reportFailure(err, config);
    return EXIT_FAILURE;
  } finally {
    try {
      file.close();
    } catch {
      // the readable closed it when it was read to the end
    }
  }
}

/** Prints a result (writing its output to `--salida` first); returns the exit status. */
async function _printResult(
  config: CliSettings,
  result: TaskResult,
  roundTripMs: number,
): Promise<number> {
  let saved: SavedOutput | undefined;
  if (config.salida !== undefined && result.status === "succeeded") {
    const json = JSON.stringify(result.output) ?? "null";
    const bytes = new TextEncoder().encode(json);
    try {
      await Deno.writeFile(config.salida, bytes);
    } catch (err) {
      log.error(_describeFileError("escribir", config.salida, err, "--allow-write"));
      return EXIT_FAILURE;
    }
    saved = { path: config.salida, bytes: bytes.length };
  }
  log.info(
    config.json
      ? JSON.stringify(resultToJson(result, saved))
      : formatResult(result, { roundTripMs, saved, catalog: catalogOf(config) }),
  );
  return result.status === "succeeded" ? EXIT_OK : EXIT_FAILURE;
}

/** Why a file could not be read or written, in Spanish, naming the permission when that is it. */
function _describeFileError(
  verb: "leer" | "escribir",
  path: string,
  err: unknown,
  permission: string,
): string {
  if (err instanceof Deno.errors.NotFound) return `No existe el fichero «${path}»`;
  if (err instanceof Deno.errors.NotCapable) {
    return `Falta el permiso ${permission} para ${verb} «${path}»: ejecute con deno task cliente`;
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return `El sistema no deja ${verb} «${path}»`;
  }
  return `No se puede ${verb} «${path}»: ${err instanceof Error ? err.message : String(err)}`;
}

/** `estado <taskId>`: prints the record of a task. */
export async function runStatus(config: CliSettings, args: readonly string[]): Promise<number> {
  const [taskId, ...rest] = args;
  if (taskId === undefined || taskId.trim() === "") {
    return usageError("Falta el id de la tarea: estado <idTarea>");
  }
  if (rest.length > 0) return usageError("estado admite un solo id de tarea");
  await using client = openClient(config);
  try {
    const view = await client.status(taskId);
    let noWorker = false;
    if (view.status === "queued" || view.status === "running") {
      // Say when no live worker runs this type: the task waits until one starts.
      const workers = await client.workers().catch(() => undefined);
      noWorker = workers !== undefined && !workers.some((w) => w.types.includes(view.taskType));
    }
    log.info(
      config.json
        ? JSON.stringify(noWorker ? { ...view, sinWorker: true } : view)
        : formatTaskView(view, { catalog: catalogOf(config), noWorker }),
    );
    return EXIT_OK;
  } catch (err) {
    if (err instanceof ColmenaError && err.code === "NOT_FOUND") {
      log.error(describeMissingTask(taskId));
    } else {
      reportFailure(err, config);
    }
    return EXIT_FAILURE;
  }
}

const CANCEL_USAGE = "cancelar <idTarea> [--json]";

/**
 * `cancelar <taskId>`: cancels a queued task and says whether it was in time. Exits 0 when the task will
 * not run (cancelled now or before), 1 when it was too late or there is no such task.
 */
export async function runCancel(config: ClientConfig, args: readonly string[]): Promise<number> {
  const [taskId, ...rest] = args;
  if (taskId === undefined || taskId.trim() === "") {
    return usageError("Falta el id de la tarea", CANCEL_USAGE);
  }
  if (rest.length > 0) return usageError("cancelar admite un solo id de tarea", CANCEL_USAGE);
  await using client = openClient(config);
  try {
    const outcome = await client.cancel(taskId);
    log.info(
      config.json ? JSON.stringify({ taskId, ...outcome }) : formatCancel(outcome),
    );
    return outcome.cancelled || outcome.status === "cancelled" ? EXIT_OK : EXIT_FAILURE;
  } catch (err) {
    if (err instanceof ColmenaError && err.code === "NOT_FOUND") {
      log.error(describeMissingTask(taskId));
    } else {
      reportFailure(err, config);
    }
    return EXIT_FAILURE;
  }
}

/** `ping`: prints the round trip to the server. */
export async function runPing(config: ClientConfig, args: readonly string[]): Promise<number> {
  if (args.length > 0) return usageError("ping no admite argumentos");
  await using client = openClient(config);
  try {
    const welcome = await client.connect();
    const ms = await client.ping();
    log.info(
      config.json
        ? JSON.stringify({ serverId: welcome.serverId, roundTripMs: ms })
        : `Pong de ${welcome.serverId} en ${config.host}:${config.port}: ${
          formatMs(ms)
        } ida y vuelta`,
    );
    return EXIT_OK;
  } catch (err) {
    reportFailure(err, config);
    return EXIT_FAILURE;
  }
}
