/**
 * The operator subcommands of `cliente`: `workers` and `dlq listar|reintentar`.
 *
 * @module
 */
import * as log from "../shared/log.ts";
import {
  DEFAULT_DLQ_LIMIT,
  dlqLimit,
  formatDeadLetters,
  formatWorkers,
  MAX_DLQ_LIMIT,
} from "./admin.ts";
import { catalogOf, type CliSettings, openClient, usageError } from "./commands.ts";
import { formatError, plural } from "./format.ts";
import { EXIT_FAILURE, EXIT_OK, reportFailure } from "./output.ts";

const DLQ_USAGE =
  "dlq listar [--limite N] [--json] | dlq reintentar [idTarea …] [--limite N] [--json]";

/** `workers`: the workers alive now; `--json` prints `{ workers }`. */
export async function runWorkers(config: CliSettings, args: readonly string[]): Promise<number> {
  if (args.length > 0) return usageError("workers no admite argumentos", "workers [--json]");
  await using client = openClient(config);
  try {
    const workers = await client.workers();
    if (config.json) {
      log.info(JSON.stringify({ workers }));
    } else if (workers.length === 0) {
      log.info("No hay workers vivos (ninguno ha dado señales en los últimos segundos)");
    } else {
      log.info(
        `${plural(workers.length, "worker vivo", "workers vivos")}\n` +
          formatWorkers(workers, Date.now(), catalogOf(config)),
      );
    }
    return EXIT_OK;
  } catch (err) {
    reportFailure(err, config);
    return EXIT_FAILURE;
  }
}

/** `dlq listar` and `dlq reintentar [taskId …]`: the dead-letter queue. */
export async function runDlq(config: CliSettings, args: readonly string[]): Promise<number> {
  const [action, ...rest] = args;
  switch (action) {
    case "listar":
    case "list":
      return await _list(config, rest);
    case "reintentar":
    case "requeue":
      return await _requeue(config, rest);
    case undefined:
      return usageError("Falta la acción de dlq", DLQ_USAGE);
    default:
      return usageError(`Acción de dlq desconocida: «${action}»`, DLQ_USAGE);
  }
}

async function _list(config: CliSettings, args: readonly string[]): Promise<number> {
  if (args.length > 0) return usageError("dlq listar no admite argumentos", DLQ_USAGE);
  const limit = dlqLimit(config.limite, DEFAULT_DLQ_LIMIT);
  if (!limit.ok) return usageError(limit.message, DLQ_USAGE);
  await using client = openClient(config);
  try {
    const entries = await client.deadLetters(limit.value);
    if (config.json) {
      log.info(JSON.stringify({ entries }));
    } else if (entries.length === 0) {
      log.info("La cola de tareas muertas (DLQ) está vacía");
    } else {
      const count = plural(entries.length, "tarea", "tareas");
      const more = entries.length === limit.value ? "; puede haber más, pruebe --limite" : "";
      log.info(
        `${count} en la cola de tareas muertas${more}\n` +
          formatDeadLetters(entries, catalogOf(config)),
      );
    }
    return EXIT_OK;
  } catch (err) {
    reportFailure(err, config);
    return EXIT_FAILURE;
  }
}

async function _requeue(config: CliSettings, args: readonly string[]): Promise<number> {
  const taskIds = [...new Set(args.map((id) => id.trim()).filter((id) => id !== ""))];
  if (taskIds.length > 1_000) {
    return usageError("dlq reintentar admite como mucho 1000 ids", DLQ_USAGE);
  }
  const limit = dlqLimit(
    config.limite,
    taskIds.length === 0 ? DEFAULT_DLQ_LIMIT : taskIds.length,
  );
  if (!limit.ok) return usageError(limit.message, DLQ_USAGE);
  await using client = openClient(config);
  let requeued: string[];
  try {
    requeued = await client.requeueDeadLetters(
      taskIds.length === 0 ? undefined : taskIds,
      limit.value,
    );
  } catch (err) {
    reportFailure(err, config);
    return EXIT_FAILURE;
  }
  const moved = new Set(requeued);
  const missing = taskIds.filter((id) => !moved.has(id));
  if (config.json) {
    log.info(JSON.stringify(taskIds.length === 0 ? { requeued } : { requeued, missing }));
  } else if (requeued.length === 0) {
    log.info("No se devolvió ninguna tarea a la cola");
  } else {
    const count = plural(requeued.length, "tarea", "tareas");
    log.info(`Devueltas a la cola ${count}:\n${requeued.map((id) => `  ${id}`).join("\n")}`);
    if (taskIds.length === 0 && requeued.length === limit.value) {
      log.info(`Puede haber más: repita la orden o use --limite (hasta ${MAX_DLQ_LIMIT})`);
    }
  }
  if (missing.length > 0) {
    log.error(formatError({
      code: "NOT_FOUND",
      message: `No estaban en la cola de tareas muertas${
        limit.value < taskIds.length ? ` (o superan --limite ${limit.value})` : ""
      }: ${missing.join(", ")}`,
    }));
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}
