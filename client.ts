/**
 * The client role: the `cliente` command line, and the `TaskClient` library.
 *
 * As a library: `import { ColmenaError, TaskClient } from "./client.ts"` (with the types a caller needs:
 * `ErrorCode`, `SubmitOptions`, `TaskResult`, `TaskView`, …). As a command: `deno task cliente` opens the
 * interactive menu; `deno task cliente ayuda` lists the subcommands; `--tareas módulo.ts` adds the task
 * types of a user's module.
 *
 * @module
 */
import { type ClientConfig, envNames, loadConfig } from "./shared/config.ts";
import {
  exitOnConfigError,
  exitOnHelp,
  exitOnTaskModuleError,
  readEnv,
} from "./shared/lifecycle.ts";
import { loadCatalog } from "./shared/task_modules.ts";
import { runCli, USAGE } from "./client/cli.ts";
import { runTokenCommand } from "./client/token_command.ts";

export {
  type BatchTask,
  type ClientTlsOptions,
  type DeadLetterInfo,
  type KnownTasks,
  type ListFilter,
  type SubmitManyItem,
  TaskClient,
  type TaskClientOptions,
  type TaskResult,
  type Welcome,
  type WorkerInfo,
} from "./client/task_client.ts";
export { ColmenaError, type ErrorCode, isErrorCode, type WireError } from "./shared/errors.ts";
export type { ClientKind, SubmitOptions, TaskStatus, TaskView } from "./shared/protocol.ts";
export type { AnyTaskDefinition, InputOf, OutputOf, TaskName } from "./shared/task_definition.ts";

if (import.meta.main) {
  if (Deno.args[0] === "token") {
    // Works on the server's tokens file, offline: its own flags, no connection settings.
    Deno.exit(await runTokenCommand(Deno.args.slice(1), readEnv(["COLMENA_TOKENS_FILE"])));
  }
  exitOnHelp(Deno.args, USAGE);
  let config: ClientConfig & { positionals: readonly string[] };
  try {
    config = loadConfig("cliente", { args: Deno.args, env: readEnv(envNames("cliente")) });
  } catch (err) {
    exitOnConfigError(err, "cliente");
  }
  let catalog;
  try {
    catalog = (await loadCatalog(config.tareas)).catalog;
  } catch (err) {
    exitOnTaskModuleError(err);
    throw err;
  }
  Deno.exit(await runCli({ ...config, catalog }));
}
