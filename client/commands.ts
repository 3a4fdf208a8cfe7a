/**
 * The one-shot subcommands of `cliente`: `enviar`, `estado`, `cancelar` and `ping`.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import type { ClientConfig } from "../shared/config.ts";
import { TASK_TYPES } from "../shared/tasks.ts";
import { parseTaskArgs, TASK_TYPE_LABELS, toTaskType } from "./args.ts";
import {
  formatCancel,
  formatError,
  formatMs,
  formatResult,
  formatTaskView,
  resultToJson,
} from "./format.ts";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, reportFailure } from "./output.ts";
import { TaskClient } from "./task_client.ts";
import { runTaskRequest } from "./task_request.ts";

/** A client connection configured from the command line. */
export function openClient(config: ClientConfig): TaskClient {
  return new TaskClient({
    host: config.host,
    port: config.port,
    kind: config.kind,
    name: config.name,
  });
}

/** Reports bad arguments in Spanish, with the subcommand's usage when given; returns the usage exit status. */
export function usageError(message: string, usage?: string): number {
  const how = usage === undefined ? "" : `\n  Uso: cliente ${usage}`;
  log.error(`${message}${how}\n  Ayuda: deno task cliente ayuda`);
  return EXIT_USAGE;
}

const TYPE_NAMES = TASK_TYPES.map((type) => TASK_TYPE_LABELS[type]).join(", ");

/** `enviar <tipo> <args…>`: submits one task, waits for its result and prints it. */
export async function runSend(config: ClientConfig, args: readonly string[]): Promise<number> {
  const [typeName, ...rest] = args;
  if (typeName === undefined) return usageError(`Falta el tipo de tarea: ${TYPE_NAMES}`);
  const type = toTaskType(typeName);
  if (type === undefined) {
    return usageError(`Tipo de tarea desconocido: «${typeName}». Use ${TYPE_NAMES}`);
  }
  const request = parseTaskArgs(type, rest);
  if (!request.ok) return usageError(request.message);
  await using client = openClient(config);
  try {
    const { result, roundTripMs } = await runTaskRequest(client, request.value, {
      priority: config.prioridad,
    });
    log.info(
      config.json ? JSON.stringify(resultToJson(result)) : formatResult(result, roundTripMs),
    );
    return result.status === "succeeded" ? EXIT_OK : EXIT_FAILURE;
  } catch (err) {
    reportFailure(err, config);
    return EXIT_FAILURE;
  }
}

/** `estado <taskId>`: prints the record of a task. */
export async function runStatus(config: ClientConfig, args: readonly string[]): Promise<number> {
  const [taskId, ...rest] = args;
  if (taskId === undefined || taskId.trim() === "") {
    return usageError("Falta el id de la tarea: estado <idTarea>");
  }
  if (rest.length > 0) return usageError("estado admite un solo id de tarea");
  await using client = openClient(config);
  try {
    const view = await client.status(taskId);
    log.info(config.json ? JSON.stringify(view) : formatTaskView(view));
    return EXIT_OK;
  } catch (err) {
    if (err instanceof ColmenaError && err.code === "NOT_FOUND") {
      log.error(`No existe ninguna tarea con el id «${taskId}»`);
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
      log.error(
        formatError({ code: err.code, message: `No existe ninguna tarea con el id «${taskId}»` }),
      );
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
