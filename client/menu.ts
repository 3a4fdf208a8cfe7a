/**
 * The interactive menu of `cliente`: pick a task type, type its input, see its result; query or cancel a
 * task; see the latest tasks and the live workers; ping.
 *
 * Bad input is explained in Spanish and asked again; server errors show their code and message; the end of
 * input (Ctrl-D, or the end of a pipe) leaves the menu cleanly.
 *
 * @module
 */
import { clientCommand } from "./send_feedback.ts";
import { setTimeout } from "node:timers/promises";
import { BUILTIN_CATALOG, type TaskCatalog } from "../shared/catalog.ts";
import { ColmenaError } from "../shared/errors.ts";
import * as log from "../shared/log.ts";
import { type Parsed, taskLabel, toTaskType } from "./args.ts";
import { catalogOf, type CliSettings, openClient } from "./commands.ts";
import { formFields, payloadFrom } from "./schema_form.ts";
import { formatWorkers } from "./admin.ts";
import { formatCancel, formatMs, formatResult, formatTaskView, plural } from "./format.ts";
import { DEFAULT_HISTORY_LIMIT, formatHistory } from "./history.ts";
import type { LineInput } from "./input.ts";
import {
  describeMissingTask,
  EXIT_FAILURE,
  EXIT_OK,
  isConnectFailure,
  reportFailure,
} from "./output.ts";
import type { TaskClient } from "./task_client.ts";
import { runTaskRequest, type TaskRequest } from "./task_request.ts";

/** The menu's actions that are not task types. */
type OtherAction = "status" | "ping" | "cancel" | "history" | "workers";

/** What the person can choose in the menu: a task type by name, another action, or leaving. */
type Action = { readonly task: string } | OtherAction | "exit";

const OTHER_ACTIONS: readonly OtherAction[] = ["status", "ping", "cancel", "history", "workers"];

/** Name and description of the actions that are not task types. */
const OTHER_ACTION_TEXT: Readonly<Record<OtherAction, readonly [string, string]>> = {
  status: ["estado", "Consultar una tarea por su id"],
  ping: ["ping", "Medir la ida y vuelta al servidor"],
  cancel: ["cancelar", "Cancelar una tarea que aún está en cola"],
  history: ["historial", `Ver las ${DEFAULT_HISTORY_LIMIT} últimas tareas`],
  workers: ["workers", "Ver los workers vivos"],
};

function _actions(catalog: TaskCatalog): Exclude<Action, "exit">[] {
  return [...catalog.names().map((task) => ({ task })), ...OTHER_ACTIONS];
}

const ACTION_NAMES: Readonly<Record<string, OtherAction | "exit">> = {
  estado: "status",
  status: "status",
  ping: "ping",
  cancelar: "cancel",
  cancel: "cancel",
  historial: "history",
  history: "history",
  workers: "workers",
  salir: "exit",
  exit: "exit",
  q: "exit",
};

/** The menu text: one numbered line per task type of the catalogue and per other action, `0` to leave. */
export function menuText(catalog: TaskCatalog = BUILTIN_CATALOG): string {
  const lines = _actions(catalog).map((action, i) => {
    const [name, description] = typeof action === "object"
      ? [taskLabel(action.task, catalog), catalog.get(action.task)?.description ?? ""]
      : OTHER_ACTION_TEXT[action];
    return `  ${String(i + 1).padStart(2)}) ${name.padEnd(10)} ${description}`;
  });
  return ["¿Qué quiere hacer?", ...lines, "   0) salir"].join("\n");
}

/**
 * The action a menu answer picks (`1`, `texto`, `estado`, `0`, `salir`…), if any: a task type comes back
 * as its wire name, another action as its name.
 */
export function parseMenuChoice(
  answer: string,
  catalog: TaskCatalog = BUILTIN_CATALOG,
): string | undefined {
  const action = _parseChoice(answer, catalog);
  return typeof action === "object" ? action.task : action;
}

function _parseChoice(answer: string, catalog: TaskCatalog): Action | undefined {
  const text = answer.trim().toLowerCase();
  if (text === "") return undefined;
  if (/^\d+$/.test(text)) {
    const index = Number(text);
    return index === 0 ? "exit" : _actions(catalog)[index - 1];
  }
  if (Object.hasOwn(ACTION_NAMES, text)) return ACTION_NAMES[text];
  const task = toTaskType(answer.trim(), catalog);
  return task === undefined ? undefined : { task };
}

function _nonEmpty(what: string): (text: string) => Parsed<string> {
  return (text) =>
    text.trim() === "" ? { ok: false, message: `Escriba ${what}` } : { ok: true, value: text };
}

/** Runs the menu until the person leaves or the input ends; returns the exit status. */
export async function runMenu(config: CliSettings, input: LineInput): Promise<number> {
  const menu = new _Menu(config, input);
  try {
    return await menu.run();
  } finally {
    await menu.close();
  }
}

class _Menu {
  readonly #config: CliSettings;
  readonly #catalog: TaskCatalog;
  readonly #input: LineInput;
  #client: TaskClient;
  #lastTaskId: string | undefined;

  constructor(config: CliSettings, input: LineInput) {
    this.#config = config;
    this.#catalog = catalogOf(config);
    this.#input = input;
    this.#client = openClient(config);
  }

  async run(): Promise<number> {
    const { host, port } = this.#config;
    let serverId: string;
    try {
      serverId = (await this.#client.connect()).serverId;
    } catch (err) {
      reportFailure(err, this.#config);
      return EXIT_FAILURE;
    }
    log.info(`colmena · cliente interactivo, conectado a ${host}:${port} (servidor ${serverId})`);
    for (;;) {
      log.info("\n" + menuText(this.#catalog));
      const answer = await this.#input.ask("Opción:");
      if (answer === null) break;
      const action = _parseChoice(answer, this.#catalog);
      if (action === undefined) {
        log.info(
          `Opción no válida: «${answer.trim()}». Elija un número del 0 al ${
            _actions(this.#catalog).length
          }`,
        );
        continue;
      }
      if (action === "exit") break;
      if (!(await this.#perform(action))) break;
    }
    log.info("Hasta luego");
    return EXIT_OK;
  }

  async close(): Promise<void> {
    await this.#client.close();
    await this.#input.close();
  }

  /** Performs one action; `false` when the input ended while asking for its data. */
  async #perform(action: Exclude<Action, "exit">): Promise<boolean> {
    if (action === "ping") {
      await this.#attempt(() => this.#ping());
      return true;
    }
    if (action === "history") {
      await this.#attempt(() => this.#history());
      return true;
    }
    if (action === "workers") {
      await this.#attempt(() => this.#workers());
      return true;
    }
    if (action === "status" || action === "cancel") {
      const hint = this.#lastTaskId === undefined ? "" : ` [${this.#lastTaskId}]`;
      const answer = await this.#askValid(
        `Id de la tarea${hint}:`,
        (text) =>
          text.trim() === "" && this.#lastTaskId !== undefined
            ? { ok: true, value: this.#lastTaskId }
            : _nonEmpty("el id de una tarea")(text.trim()),
      );
      if (answer === null || answer === undefined) return false;
      await this.#attempt(() => action === "status" ? this.#status(answer) : this.#cancel(answer));
      return true;
    }
    const request = await this.#askTask(action.task);
    if (request === null) return false;
    await this.#attempt(() => this.#run(request));
    return true;
  }

  /** Asks for a task's payload with a form built from its input schema; `null` when input ended. */
  async #askTask(type: string): Promise<TaskRequest | null> {
    const definition = this.#catalog.get(type);
    if (definition === undefined) return null;
    const fields = formFields(definition.input);
    const values: unknown[] = [];
    for (const field of fields) {
      const value = await this.#askValid(field.question, field.read);
      if (value === null) return null;
      values.push(value);
    }
    return { type, payload: payloadFrom(fields, values) };
  }

  /** Asks until the answer parses; `null` when input ended (an omitted field reads as `undefined`). */
  async #askValid<T>(
    question: string,
    parse: (text: string) => Parsed<T>,
  ): Promise<T | undefined | null> {
    for (;;) {
      const answer = await this.#input.ask(question);
      if (answer === null) return null;
      const parsed = parse(answer);
      if (parsed.ok) return parsed.value;
      log.info(parsed.message);
    }
  }

  async #run(request: TaskRequest): Promise<void> {
    const { result, roundTripMs } = await runTaskRequest(this.#client, request, {
      priority: this.#config.prioridad,
    });
    this.#lastTaskId = result.taskId;
    log.info(formatResult(result, { roundTripMs, catalog: this.#catalog }));
  }

  async #status(taskId: string): Promise<void> {
    try {
      log.info(formatTaskView(await this.#client.status(taskId), { catalog: this.#catalog }));
    } catch (err) {
      if (!(err instanceof ColmenaError && err.code === "NOT_FOUND")) throw err;
      log.error(describeMissingTask(taskId));
    }
  }

  async #cancel(taskId: string): Promise<void> {
    try {
      log.info(formatCancel(await this.#client.cancel(taskId)));
    } catch (err) {
      if (!(err instanceof ColmenaError && err.code === "NOT_FOUND")) throw err;
      log.error(describeMissingTask(taskId));
    }
  }

  async #history(): Promise<void> {
    const page = await this.#client.list({}, { limit: DEFAULT_HISTORY_LIMIT });
    if (page.items.length === 0) {
      log.info("Todavía no hay tareas");
      return;
    }
    const more = page.nextCursor === null
      ? ""
      : `\nHay más: ${clientCommand(this.#config, `historial --cursor ${page.nextCursor}`)}`;
    const count = plural(page.items.length, "tarea", "tareas");
    log.info(
      `${count}, las más recientes primero\n${formatHistory(page.items, this.#catalog)}${more}`,
    );
  }

  async #workers(): Promise<void> {
    const workers = await this.#client.workers();
    log.info(
      workers.length === 0
        ? "No hay workers vivos"
        : `${plural(workers.length, "worker vivo", "workers vivos")}\n` +
          formatWorkers(workers, Date.now(), this.#catalog),
    );
  }

  async #ping(): Promise<void> {
    log.info(`Pong: ${formatMs(await this.#client.ping())} ida y vuelta`);
  }

  /** Connects again when the connection was lost since the last action. */
  async #connected(): Promise<void> {
    // `prompt()` blocks the event loop: let the client notice a close that happened meanwhile.
    await setTimeout(0);
    try {
      await this.#client.connect();
    } catch (err) {
      if (isConnectFailure(err)) throw err;
      await this.#client.close();
      this.#client = openClient(this.#config);
      await this.#client.connect();
    }
  }

  /** Runs an action; a failure is shown, never thrown. */
  async #attempt(action: () => Promise<void>): Promise<void> {
    try {
      await this.#connected();
      await action();
    } catch (err) {
      reportFailure(err, this.#config);
    }
  }
}
