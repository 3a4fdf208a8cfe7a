/**
 * `deno task caos`: the chaos suite (`tests/chaos/`) at a larger scale, with a real restart of the local
 * RabbitMQ, and the figures of the run written into the table of `docs/reliability.md`.
 *
 * Usage: `deno task caos [--escala N] [--sin-reinicio-rabbit] [--sin-reinicio-postgres] [--no-escribir]`. The tests append one JSON
 * line each to the file `COLMENA_CAOS_INFORME` names; this script renders them between the markers
 * `<!-- caos:inicio -->` and `<!-- caos:fin -->`. It exits with the tests' status.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { wantsHelp } from "../shared/help.ts";
import * as log from "../shared/log.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const DOC = `${ROOT}docs/reliability.md`;
const START = "<!-- caos:inicio -->";
const END = "<!-- caos:fin -->";

const USAGE = `Uso: deno task -q caos [opciones]
  --escala N               multiplica tareas, conexiones y entradas del fuzzer   [5]
  --sin-reinicio-rabbit    no reinicia el RabbitMQ local (solo el corte por proxy)
  --sin-reinicio-postgres  no reinicia el PostgreSQL local (solo el corte por proxy)
  --no-escribir            no toca docs/reliability.md
  --help, -h, --ayuda      esta ayuda`;

/** One line of the report, as the chaos tests write it (tests/_helpers/chaos.ts `report`). */
interface Row {
  escenario: string;
  tareas: number;
  fallos: string;
  resultados: number;
  duplicadosEntregados: number;
  duplicadosAbsorbidos?: number;
  perdidas: number;
  ms: number;
  notas?: string;
  escala: number;
  fecha: string;
}

function cell(value: unknown): string {
  return String(value ?? "—").replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** The Markdown table of a run, with a line that says when, where and how it ran. */
export function renderTable(
  rows: readonly Row[],
  run: { scale: number; passed: boolean; when: string; machine: string },
): string {
  const header = [
    "| Escenario | Tareas | Fallos inyectados | Resultados | Duplicados entregados | Duplicados absorbidos | Perdidas | Tiempo | Notas |",
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  const lines = rows.map((r) =>
    `| ${cell(r.escenario)} | ${r.tareas} | ${
      cell(r.fallos)
    } | ${r.resultados} | ${r.duplicadosEntregados} | ${
      r.duplicadosAbsorbidos ?? "—"
    } | ${r.perdidas} | ${(r.ms / 1000).toFixed(1)} s | ${cell(r.notas)} |`
  );
  const verdict = run.passed ? "todas las pruebas pasaron" : "**alguna prueba falló**";
  return [
    `Ejecución del ${run.when} con escala ${run.scale} en ${run.machine}: ${verdict}.`,
    "",
    ...header,
    ...lines,
  ].join("\n");
}

/** Replaces what lies between the markers of `doc` with `table`. */
export function replaceBetweenMarkers(doc: string, table: string): string {
  const start = doc.indexOf(START);
  const end = doc.indexOf(END);
  if (start === -1 || end === -1 || end < start) {
    throw new Error(`Cannot write the table: docs/reliability.md lacks "${START}" … "${END}"`);
  }
  return `${doc.slice(0, start + START.length)}\n\n${table}\n\n${doc.slice(end)}`;
}

async function machine(): Promise<string> {
  let cpus = "?";
  try {
    const out = await new Deno.Command("nproc", { stdout: "piped" }).output();
    cpus = new TextDecoder().decode(out.stdout).trim();
  } catch {
    // no nproc: left unknown
  }
  return `${cpus} núcleos, Deno ${Deno.version.deno}`;
}

async function main(): Promise<number> {
  if (wantsHelp(Deno.args)) {
    log.info(USAGE);
    return 0;
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        escala: { type: "string", default: "5" },
        "sin-reinicio-rabbit": { type: "boolean", default: false },
        "sin-reinicio-postgres": { type: "boolean", default: false },
        "no-escribir": { type: "boolean", default: false },
        ayuda: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch {
    log.error("Argumento no válido");
    log.info(USAGE);
    return 2;
  }
  if (values.ayuda) {
    log.info(USAGE);
    return 0;
  }
  const scale = Number(values.escala);
  if (!Number.isFinite(scale) || scale <= 0) {
    log.error(`--escala debe ser un número positivo, no "${values.escala}"`);
    return 2;
  }
  const informe = await Deno.makeTempFile({ prefix: "colmena-caos-", suffix: ".jsonl" });
  try {
    log.info(`colmena · caos: pruebas de tests/chaos/ con escala ${scale}`);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "test",
        "--allow-net",
        "--allow-run",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "tests/chaos/",
      ],
      cwd: ROOT,
      env: {
        COLMENA_CAOS_ESCALA: String(scale),
        COLMENA_CAOS_INFORME: informe,
        COLMENA_CAOS_RABBIT_RESTART: values["sin-reinicio-rabbit"] ? "0" : "1",
        COLMENA_CAOS_PG_RESTART: values["sin-reinicio-postgres"] ? "0" : "1",
      },
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const status = await child.status;
    const text = await Deno.readTextFile(informe);
    const rows = text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Row);
    const table = renderTable(rows, {
      scale,
      passed: status.success,
      when: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
      machine: await machine(),
    });
    log.info(`\n${table}\n`);
    if (!values["no-escribir"]) {
      const doc = await Deno.readTextFile(DOC);
      await Deno.writeTextFile(DOC, replaceBetweenMarkers(doc, table));
      // The table as deno fmt lays it out, so that `deno fmt --check` stays clean.
      await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", DOC], cwd: ROOT }).output();
      log.info("Tabla escrita en docs/reliability.md");
    }
    return status.code;
  } finally {
    await Deno.remove(informe).catch(() => {});
  }
}

if (import.meta.main) {
  const code = await main();
  log.flushLog();
  Deno.exit(code);
}
