/**
 * Unit tests of the pure parts of `cliente historial`: state names, time bounds, the list filter, the page
 * size, the table, and the options in the configuration.
 *
 * @module
 */
import assert from "node:assert/strict";
import { formatUtcOffset } from "../../client/format.ts";
import {
  buildListFilter,
  formatHistory,
  historyPageSize,
  parseSpan,
  parseStatuses,
  parseTimeBound,
  toTaskStatus,
} from "../../client/history.ts";
import { loadConfig } from "../../shared/config.ts";
import type { TaskView } from "../../shared/protocol.ts";

const NOW = Date.UTC(2025, 10, 26, 12, 0, 0);

Deno.test("toTaskStatus maps English and Spanish state names, with or without accents", () => {
  assert.equal(toTaskStatus("queued"), "queued");
  assert.equal(toTaskStatus("en-cola"), "queued");
  assert.equal(toTaskStatus("en cola"), "queued");
  assert.equal(toTaskStatus("cola"), "queued");
  assert.equal(toTaskStatus("running"), "running");
  assert.equal(toTaskStatus("ejecutando"), "running");
  assert.equal(toTaskStatus("en ejecución"), "running");
  assert.equal(toTaskStatus("succeeded"), "succeeded");
  assert.equal(toTaskStatus("Completada"), "succeeded");
  assert.equal(toTaskStatus("completadas"), "succeeded");
  assert.equal(toTaskStatus("failed"), "failed");
  assert.equal(toTaskStatus(" fallida "), "failed");
  assert.equal(toTaskStatus("cancelled"), "cancelled");
  assert.equal(toTaskStatus("canceled"), "cancelled");
  assert.equal(toTaskStatus("cancelada"), "cancelled");
  assert.equal(toTaskStatus("toString"), undefined);
  assert.equal(toTaskStatus("terminada"), undefined);
});

Deno.test("parseStatuses reads a comma-separated list without repeats, or says what is wrong", () => {
  assert.deepEqual(parseStatuses("fallida, cancelled,failed"), {
    ok: true,
    value: ["failed", "cancelled"],
  });
  assert.deepEqual(parseStatuses("en-cola,ejecutando"), {
    ok: true,
    value: ["queued", "running"],
  });
  const bad = parseStatuses("fallida,rota");
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.message : "", /^Estado desconocido: «rota»\. Use queued, running/);
  const empty = parseStatuses(" , ");
  assert.equal(empty.ok, false);
  assert.match(!empty.ok ? empty.message : "", /^Falta la lista de estados/);
});

Deno.test("parseSpan reads 30m, 1h, 2d and combinations, and nothing else", () => {
  assert.equal(parseSpan("45s"), 45_000);
  assert.equal(parseSpan("30m"), 1_800_000);
  assert.equal(parseSpan("1h"), 3_600_000);
  assert.equal(parseSpan("2d"), 172_800_000);
  assert.equal(parseSpan("1h30m"), 5_400_000);
  assert.equal(parseSpan(" 2H "), 7_200_000);
  assert.equal(parseSpan("0m"), 0);
  for (const bad of ["", "h", "1", "1.5h", "-1h", "1x", "1 h", "2025-11-26", "1h-"]) {
    assert.equal(parseSpan(bad), undefined, bad);
  }
});

Deno.test("parseTimeBound turns a span into that long before now, in ISO 8601 UTC", () => {
  assert.deepEqual(parseTimeBound("30m", NOW), { ok: true, value: "2025-11-26T11:30:00.000Z" });
  assert.deepEqual(parseTimeBound("2d", NOW), { ok: true, value: "2025-11-24T12:00:00.000Z" });
});

Deno.test("parseTimeBound reads ISO 8601 dates and times, zoned or local", () => {
  assert.deepEqual(parseTimeBound("2025-11-26T10:00:00Z", NOW), {
    ok: true,
    value: "2025-11-26T10:00:00.000Z",
  });
  assert.deepEqual(parseTimeBound("2025-11-26T10:00:00.5+01:00", NOW), {
    ok: true,
    value: "2025-11-26T09:00:00.500Z",
  });
  assert.deepEqual(parseTimeBound("2025-11-26", NOW), {
    ok: true,
    value: "2025-11-26T00:00:00.000Z",
  });
  assert.deepEqual(parseTimeBound("2025-11-26 10:30", NOW), {
    ok: true,
    value: new Date(2025, 10, 26, 10, 30).toISOString(),
  });
});

Deno.test("parseTimeBound refuses what is neither a date nor a span, in Spanish", () => {
  for (const bad of ["ayer", "26/11/2025", "2025-13-45", "1 hora", "99999999999999d", ""]) {
    const parsed = parseTimeBound(bad, NOW);
    assert.equal(parsed.ok, false, bad);
    assert.match(!parsed.ok ? parsed.message : "", /no es una fecha ISO 8601/);
  }
});

Deno.test("buildListFilter gives the wire filter from the options", () => {
  assert.deepEqual(buildListFilter({}, NOW), { ok: true, value: {} });
  assert.deepEqual(
    buildListFilter({
      estado: "fallida,cancelada",
      tipoTarea: "números",
      deTipo: "móvil",
      desde: "1d",
      hasta: "2025-11-26T11:00:00Z",
    }, NOW),
    {
      ok: true,
      value: {
        statuses: ["failed", "cancelled"],
        taskType: "numbers",
        clientKind: "mobile",
        since: "2025-11-25T12:00:00.000Z",
        until: "2025-11-26T11:00:00.000Z",
      },
    },
  );
});

Deno.test("buildListFilter says which option is wrong", () => {
  const cases: [Parameters<typeof buildListFilter>[0], RegExp][] = [
    [{ estado: "rota" }, /Estado desconocido: «rota»/],
    [{ tipoTarea: "video" }, /Tipo de tarea desconocido: «video»\. Use texto, números/],
    [{ deTipo: "tablet" }, /Tipo de cliente desconocido: «tablet»/],
    [{ deTipo: "web,movil" }, /--de-tipo admite un solo tipo de cliente/],
    [{ desde: "ayer" }, /^--desde: «ayer» no es una fecha/],
    [{ hasta: "pronto" }, /^--hasta: «pronto» no es una fecha/],
    [{ desde: "1h", hasta: "2h" }, /--desde debe ser anterior a --hasta/],
  ];
  for (const [options, message] of cases) {
    const filter = buildListFilter(options, NOW);
    assert.equal(filter.ok, false, JSON.stringify(options));
    assert.match(!filter.ok ? filter.message : "", message);
  }
});

Deno.test("historyPageSize defaults to 20, to 500 with --todas, and caps --limite at 500", () => {
  assert.deepEqual(historyPageSize(undefined, false), { ok: true, value: 20 });
  assert.deepEqual(historyPageSize(undefined, true), { ok: true, value: 500 });
  assert.deepEqual(historyPageSize(7, true), { ok: true, value: 7 });
  assert.deepEqual(historyPageSize(500, false), { ok: true, value: 500 });
  const tooMany = historyPageSize(501, false);
  assert.equal(tooMany.ok, false);
  assert.match(
    !tooMany.ok ? tooMany.message : "",
    /^--limite debe ser un entero de 1 a 500 \(historial\) o de 1 a 1000 \(dlq\), no «501»$/,
  );
});

function _view(overrides: Partial<TaskView>): TaskView {
  return {
    taskId: "0f8fad5b-d9cb-469f-a165-70867728950e",
    taskType: "text",
    status: "succeeded",
    priority: 0,
    client: { name: "ana", kind: "mobile" },
    submittedAt: new Date(2025, 10, 26, 21, 3, 4).toISOString(),
    ...overrides,
  };
}

Deno.test("formatHistory shows short ids, Spanish names, local times and dashes for what is missing", () => {
  const table = formatHistory([
    _view({ worker: "worker1", durationMs: 12.34 }),
    _view({
      taskId: "short",
      taskType: "video",
      status: "queued",
      client: { name: "cli-1", kind: "cli" },
      submittedAt: new Date(2025, 10, 26, 9, 0, 0).toISOString(),
    }),
  ]);
  const zone = formatUtcOffset(-new Date(2025, 10, 26, 21, 3, 4).getTimezoneOffset());
  const rule = "─".repeat(19 + 1 + zone.length);
  const pad = " ".repeat(zone.length + 1);
  assert.equal(
    table,
    [
      `  id        tipo   estado      cliente    enviada${pad}              duración  worker`,
      `  ────────  ─────  ──────────  ─────────  ${rule}  ────────  ───────`,
      `  0f8fad5b  texto  completada  móvil/ana  2025-11-26 21:03:04 ${zone}   12.3 ms  worker1`,
      `  short     video  en cola     cli/cli-1  2025-11-26 09:00:00 ${zone}         —  —`,
    ].join("\n"),
  );
});

Deno.test("formatHistory keeps a row on one line when a name has a line end", () => {
  const table = formatHistory([_view({ client: { name: "a\nb", kind: "web" } })]);
  assert.equal(table.split("\n").length, 3);
  assert.match(table, /web\/a b/);
});

Deno.test("loadConfig reads the historial and dlq options from flags, then the environment", () => {
  const config = loadConfig("cliente", {
    args: [
      "historial",
      "--estado",
      "fallida",
      "--tipo-tarea=texto",
      "--de-tipo",
      "movil",
      "--desde",
      "2h",
      "--limite",
      "50",
      "--todas",
    ],
    env: { COLMENA_HIST_HASTA: "30m", COLMENA_HIST_CURSOR: "abc", COLMENA_LIMITE: "9" },
  });
  assert.deepEqual(config.positionals, ["historial"]);
  assert.equal(config.estado, "fallida");
  assert.equal(config.tipoTarea, "texto");
  assert.equal(config.deTipo, "movil");
  assert.equal(config.desde, "2h");
  assert.equal(config.hasta, "30m");
  assert.equal(config.limite, 50);
  assert.equal(config.cursor, "abc");
  assert.equal(config.todas, true);
  const defaults = loadConfig("cliente", { args: [], env: {} });
  assert.equal(defaults.limite, undefined);
  assert.equal(defaults.todas, false);
  assert.throws(() => loadConfig("cliente", { args: ["--limite", "0"], env: {} }), /--limite/);
});
