/**
 * The `historial` subcommand: a page of task records, newest first, or every page with `--todas`.
 *
 * @module
 */
import type { TaskListItem } from "../shared/protocol.ts";
import * as log from "../shared/log.ts";
import { catalogOf, type CliSettings, openClient, usageError } from "./commands.ts";
import { plural } from "./format.ts";
import { buildListFilter, formatHistory, historyPageSize, MAX_HISTORY_PAGES } from "./history.ts";
import { EXIT_FAILURE, EXIT_OK, reportFailure } from "./output.ts";
import { clientCommand } from "./send_feedback.ts";

const HISTORY_USAGE = "historial [--estado LISTA] [--tipo-tarea TIPO] [--de-tipo TIPO] " +
  "[--desde CUÁNDO] [--hasta CUÁNDO] [--limite N] [--cursor CURSOR] [--todas] [--json]";

/**
 * `historial`: prints the task records that match `--estado`, `--tipo-tarea`, `--de-tipo`, `--desde` and
 * `--hasta`, from `--cursor` on; `--json` prints `{ items, nextCursor }`.
 */
export async function runHistory(config: CliSettings, args: readonly string[]): Promise<number> {
  if (args.length > 0) {
    return usageError(
      `historial no admite argumentos («${args.join(" ")}»)`,
      HISTORY_USAGE,
    );
  }
  const filter = buildListFilter(config, Date.now());
  if (!filter.ok) return usageError(filter.message, HISTORY_USAGE);
  const limit = historyPageSize(config.limite, config.todas);
  if (!limit.ok) return usageError(limit.message, HISTORY_USAGE);
  await using client = openClient(config);
  const items: TaskListItem[] = [];
  let cursor = config.cursor ?? null;
  let pages = 0;
  try {
    do {
      const page = await client.list(filter.value, {
        limit: limit.value,
        ...(cursor === null ? {} : { cursor }),
      });
      items.push(...page.items);
      cursor = page.nextCursor;
      pages++;
    } while (config.todas && cursor !== null && pages < MAX_HISTORY_PAGES);
  } catch (err) {
    reportFailure(err, config);
    return EXIT_FAILURE;
  }
  if (config.todas && cursor !== null) {
    log.warn(`Se alcanzó el máximo de ${MAX_HISTORY_PAGES} páginas; siga con --cursor`);
  }
  if (config.json) {
    log.info(JSON.stringify({ items, nextCursor: cursor }));
    return EXIT_OK;
  }
  if (items.length === 0) {
    log.info(
      config.cursor === undefined
        ? "No hay tareas que cumplan el filtro"
        : "No hay más tareas después de ese cursor",
    );
    return EXIT_OK;
  }
  log.info(
    `${plural(items.length, "tarea", "tareas")}, las más recientes primero\n` +
      formatHistory(items, catalogOf(config)),
  );
  if (cursor !== null) {
    log.info(
      `Hay más: ${clientCommand(config, `historial --cursor ${cursor}`)} (con los mismos filtros)`,
    );
  }
  // The list carries no outputs: say how to see one.
  if (items.some((item) => item.outputOmitted === true || item.outputRef !== undefined)) {
    log.info(`Salida de una tarea: ${clientCommand(config, "estado <id>")}`);
  }
  return EXIT_OK;
}
