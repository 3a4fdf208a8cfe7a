/**
 * The `cliente` command line: the interactive menu, `enviar`, `estado`, `cancelar`, `historial`, `workers`,
 * `dlq`, `ping` and `simular`.
 *
 * Exit status: 0 on success, 1 when the server cannot be reached, answers an error, a task fails or a
 * cancel comes too late, 2 on bad arguments. `simulate` and `formatSummary` are exported for scripts such as `scripts/demo.ts`.
 *
 * @module
 */
import { suggest } from "../shared/config_errors.ts";
import * as log from "../shared/log.ts";
import { runDlq, runWorkers } from "./admin_commands.ts";
import { type CliSettings, runCancel, runPing, runSend, runStatus } from "./commands.ts";
import { runHistory } from "./history_command.ts";
import { stdinInput } from "./input.ts";
import { runMenu } from "./menu.ts";
import { EXIT_OK, EXIT_USAGE } from "./output.ts";
import { runSimulate } from "./simulate_command.ts";
import { runTypes } from "./types_command.ts";

export {
  DEFAULT_WINDOW,
  simulate,
  type SimulationOptions,
  type SimulationProgress,
} from "./simulate.ts";
export type { GroupStats, LatencyStats, SimulatedTask, SimulationSummary } from "./stats.ts";
export { formatSummary } from "./summary.ts";
export { wantsHelp } from "../shared/help.ts";

/** Usage text of the `cliente` command. */
export const USAGE = `Uso: deno task -q cliente [opciones] [orden …]

Órdenes:
  menu                                menú interactivo (sin orden, también)
  enviar texto <texto…>               cuenta palabras, invierte y pasa a mayúsculas
  enviar texto --archivo <fichero>    lo mismo con el texto de un fichero (UTF-8), subido por partes
  enviar numeros <n…>                 suma, media, mínimo y máximo (separados por espacios o comas)
  enviar eco <json o texto>           devuelve el mensaje
  enviar esperar <ms>                 espera de 0 a 60000 ms
  enviar hash <datos> [iteraciones]   SHA-256 iterado (1 iteración por defecto)
  enviar hash --archivo <fichero> [iteraciones]   el SHA-256 del texto de un fichero
  enviar <tipo> --datos '<json>'      cualquier tipo, también los propios (--tareas), con sus datos
  tipos [--json-schema]               los tipos de tarea cargados y sus esquemas (JSON Schema)
  estado <idTarea>                    muestra el registro de una tarea
  cancelar <idTarea>                  cancela una tarea en cola (sale con 1 si ya era tarde)
  historial                           tareas, las más recientes primero, por páginas
  workers                             workers vivos: carga, tareas hechas, última señal
  dlq listar                          tareas en la cola de tareas muertas (agotaron sus intentos)
  dlq reintentar [idTarea …]          las devuelve a la cola de tareas (sin ids: las primeras --limite)
  ping                                mide la ida y vuelta al servidor
  token crear <nombre> --tokens F     crea un token de acceso (ver: cliente token --help)
  simular                             simula muchos clientes a la vez y resume los resultados
  ayuda, --help, -h, --ayuda          muestra esta ayuda

Opciones:
  --host HOST             servidor                          [COLMENA_HOST, localhost]
  --port, -p PUERTO       puerto del servidor               [COLMENA_PORT, 8888]
  --tls                   conectar con TLS                  [COLMENA_TLS, false]
  --ca FICHERO            CA que firmó el certificado del servidor (implica --tls)
                                                            [COLMENA_CA, las del sistema]
  --cert FICHERO          certificado de cliente, para TLS mutuo (con --key)
                                                            [COLMENA_CERT]
  --key FICHERO           clave privada del certificado     [COLMENA_KEY]
  --tipo-cliente TIPO     web, mobile o cli                 [COLMENA_CLIENT_KIND, cli]
  --nombre NOMBRE         nombre de este cliente            [COLMENA_CLIENT_NAME, cliente]
  --token TOKEN           token de acceso (mejor en la variable de entorno)
                                                            [COLMENA_TOKEN]
  --prioridad N           prioridad de 0 (baja) a 9 (alta)  [COLMENA_PRIORIDAD, 0]
  --json                  salida JSON en una línea          [COLMENA_JSON, false]
  --archivo FICHERO       enviar: el texto de la tarea sale de este fichero
                                                            [COLMENA_ARCHIVO]
  --salida FICHERO        enviar: escribe la salida entera de la tarea en este fichero (JSON);
                          una salida grande solo se resume en pantalla
                                                            [COLMENA_SALIDA]
  --intentos N            enviar: intentos antes de ir a la cola de tareas muertas (1 a 20)
                                                            [COLMENA_INTENTOS, el del servidor: 3]
  --timeout-ms N          enviar: tiempo máximo de cada intento, en ms (1 a 3600000)
                                                            [COLMENA_TIMEOUT_MS, según el tipo]
  --clientes N            simular: clientes a la vez        [COLMENA_SIM_CLIENTES, 10]
  --tareas FICHERO        módulo de tareas propias (repetible)
                                                            [COLMENA_TAREAS, lista con comas]
  --datos JSON            enviar: los datos de la tarea en JSON (cualquier tipo)
                                                            [COLMENA_DATOS]
  --json-schema           tipos: imprime los esquemas de entrada y salida
  --num-tareas N          simular: tareas en total          [COLMENA_SIM_TAREAS, 200]
  --tipos LISTA           simular: tipos de cliente, p. ej. web,movil,cli
                                                            [COLMENA_SIM_TIPOS, cli]
  --tareas-tipos LISTA    simular: tipos de tarea, p. ej. texto,numeros
                                                            [COLMENA_SIM_TAREAS_TIPOS, todos]
  --estado LISTA          historial: estados, p. ej. fallida,cancelada (o failed,cancelled;
                          en-cola, ejecutando, completada)  [COLMENA_HIST_ESTADO, todos]
  --tipo-tarea TIPO       historial: un tipo de tarea       [COLMENA_HIST_TIPO_TAREA, todos]
  --de-tipo TIPO          historial: un tipo de cliente, web, movil o cli
                                                            [COLMENA_HIST_DE_TIPO, todos]
  --desde CUÁNDO          historial: enviadas desde entonces: ISO 8601 o tiempo atrás (30m, 2h, 1d)
                                                            [COLMENA_HIST_DESDE]
  --hasta CUÁNDO          historial: enviadas antes de entonces, igual que --desde
                                                            [COLMENA_HIST_HASTA]
  --limite N              historial: tareas por página (1 a 500); dlq: cuántas (1 a 1000)
                                                            [COLMENA_LIMITE, 20]
  --cursor CURSOR         historial: sigue donde acabó la página anterior
                                                            [COLMENA_HIST_CURSOR]
  --todas                 historial: todas las páginas (hasta 100, de 500 si no hay --limite)
                                                            [COLMENA_HIST_TODAS, false]

Los tipos de tarea se escriben en español o en inglés: texto/text, numeros/numbers, eco/echo,
esperar/sleep, hash; los propios, con su nombre. Los números negativos van detrás de "--":
cliente enviar numeros -- -5 3

Ejemplos:
  deno task -q cliente enviar texto "hola mundo"
  deno task -q cliente --prioridad 9 enviar numeros 4 8 15 16 23 42
  deno task -q cliente enviar texto --archivo libro.txt --salida resultado.json
  deno task -q cliente enviar esperar 5000 --intentos 1 --timeout-ms 100   (acaba en dlq listar)
  deno task -q cliente --json estado 1b4e28ba-2fa1-11d2-883f-0016d3cca427
  deno task -q cliente cancelar 1b4e28ba-2fa1-11d2-883f-0016d3cca427
  deno task -q cliente historial --estado fallida,cancelada --desde 2h --limite 50
  deno task -q cliente historial --tipo-tarea texto --de-tipo movil --todas --json
  deno task -q cliente dlq reintentar 1b4e28ba-2fa1-11d2-883f-0016d3cca427
  deno task -q cliente --tareas ../mis_tareas.ts enviar resumen --datos '{"texto": "Hola. Adiós."}'
  deno task -q cliente --tareas ../mis_tareas.ts tipos --json-schema
  deno task -q cliente simular --clientes 20 --tipos web,movil --num-tareas 500`;

/** The subcommands, for suggestions when one is mistyped. */
const COMMANDS = [
  "menu",
  "enviar",
  "estado",
  "cancelar",
  "historial",
  "workers",
  "dlq",
  "ping",
  "simular",
  "tipos",
  "ayuda",
];

/** Runs the command line; returns the exit status. */
export async function runCli(
  config: CliSettings & { readonly positionals: readonly string[] },
): Promise<number> {
  const [command, ...args] = config.positionals;
  try {
    switch (command) {
      case undefined:
      case "menu":
      case "menú":
        return await runMenu(config, stdinInput());
      case "enviar":
        return await runSend(config, args);
      case "estado":
        return await runStatus(config, args);
      case "cancelar":
      case "cancel":
        return await runCancel(config, args);
      case "historial":
      case "history":
        return await runHistory(config, args);
      case "workers":
        return await runWorkers(config, args);
      case "dlq":
        return await runDlq(config, args);
      case "ping":
        return await runPing(config, args);
      case "simular":
        return await runSimulate(config, args);
      case "tipos":
      case "types":
        return runTypes(config, args);
      case "ayuda":
      case "help":
        log.info(USAGE);
        return EXIT_OK;
      default: {
        const near = suggest(command, COMMANDS);
        log.error(
          `Orden desconocida: «${command}»` +
            (near === undefined ? "" : `. ¿Quería decir «${near}»?`),
        );
        log.info("Ayuda: deno task -q cliente --help");
        return EXIT_USAGE;
      }
    }
  } finally {
    log.flushLog();
  }
}
