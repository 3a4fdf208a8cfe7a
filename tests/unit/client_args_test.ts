/**
 * Unit tests of `client/args.ts` and the pure parts of the `cliente` command line: names, numbers, task
 * arguments, menu choices and `--help`.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  parseEchoMessage,
  parseFileTaskArgs,
  parseInteger,
  parseKinds,
  parseNumbers,
  parseTaskArgs,
  parseTaskTypes,
  toClientKind,
  toTaskType,
} from "../../client/args.ts";
import { wantsHelp } from "../../client/cli.ts";
import { parseMenuChoice } from "../../client/menu.ts";
import { BUILTIN_CATALOG } from "../../shared/catalog.ts";

Deno.test("toTaskType maps Spanish and English names, with or without accents", () => {
  assert.equal(toTaskType("texto"), "text");
  assert.equal(toTaskType("text"), "text");
  assert.equal(toTaskType("numeros"), "numbers");
  assert.equal(toTaskType("números"), "numbers");
  assert.equal(toTaskType("NÚMEROS"), "numbers");
  assert.equal(toTaskType("numbers"), "numbers");
  assert.equal(toTaskType("eco"), "echo");
  assert.equal(toTaskType("echo"), "echo");
  assert.equal(toTaskType("esperar"), "sleep");
  assert.equal(toTaskType("sleep"), "sleep");
  assert.equal(toTaskType(" hash "), "hash");
  assert.equal(toTaskType("toString"), undefined);
  assert.equal(toTaskType("dormir"), undefined);
});

Deno.test("toClientKind maps movil and móvil to the wire kind mobile", () => {
  assert.equal(toClientKind("movil"), "mobile");
  assert.equal(toClientKind("móvil"), "mobile");
  assert.equal(toClientKind("Móvil"), "mobile");
  assert.equal(toClientKind("mobile"), "mobile");
  assert.equal(toClientKind("web"), "web");
  assert.equal(toClientKind("cli"), "cli");
  assert.equal(toClientKind("tablet"), undefined);
});

Deno.test("parseKinds reads a comma-separated list without repeats", () => {
  assert.deepEqual(parseKinds("web,movil"), { ok: true, value: ["web", "mobile"] });
  assert.deepEqual(parseKinds(" web , móvil, mobile ,cli,"), {
    ok: true,
    value: ["web", "mobile", "cli"],
  });
  const bad = parseKinds("web,tablet");
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.message : "", /«tablet»/);
  assert.equal(parseKinds(" , ").ok, false);
});

Deno.test("parseTaskTypes accepts Spanish and English names and rejects unknown ones", () => {
  assert.deepEqual(parseTaskTypes("text,numbers"), { ok: true, value: ["text", "numbers"] });
  assert.deepEqual(parseTaskTypes("texto,eco,esperar,hash"), {
    ok: true,
    value: ["text", "echo", "sleep", "hash"],
  });
  const bad = parseTaskTypes("text,video");
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.message : "", /«video»/);
});

Deno.test("parseNumbers splits on spaces, commas and semicolons", () => {
  assert.deepEqual(parseNumbers("4 8 15 16 23 42"), { ok: true, value: [4, 8, 15, 16, 23, 42] });
  assert.deepEqual(parseNumbers("1,2 , 3;4\t5"), { ok: true, value: [1, 2, 3, 4, 5] });
  assert.deepEqual(parseNumbers("-5 +3 3.5 .5 1e3 2."), {
    ok: true,
    value: [-5, 3, 3.5, 0.5, 1000, 2],
  });
});

Deno.test("parseNumbers rejects words, empty input and non-finite values in Spanish", () => {
  const bad = parseNumbers("1 abc 3");
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.message : "", /«abc» no es un número/);
  assert.deepEqual(parseNumbers("   "), { ok: false, message: "Escriba al menos un número" });
  for (const text of ["Infinity", "NaN", "1e999", "0x10", "-", "1..2"]) {
    assert.equal(parseNumbers(text).ok, false, text);
  }
});

Deno.test("parseInteger checks the range and says what it parsed", () => {
  const range = { min: 0, max: 60_000, what: "La espera" };
  assert.deepEqual(parseInteger(" 250 ", range), { ok: true, value: 250 });
  assert.deepEqual(parseInteger("0", range), { ok: true, value: 0 });
  for (const text of ["-1", "60001", "1.5", "abc", ""]) {
    const parsed = parseInteger(text, range);
    assert.equal(parsed.ok, false, text);
    assert.match(
      !parsed.ok ? parsed.message : "",
      /^La espera debe ser un número entero entre 0 y 60000/,
    );
  }
});

Deno.test("parseEchoMessage reads JSON and falls back to the text itself", () => {
  assert.deepEqual(parseEchoMessage('{"a":[1,null]}'), { a: [1, null] });
  assert.equal(parseEchoMessage("42"), 42);
  assert.equal(parseEchoMessage("hola mundo"), "hola mundo");
  assert.equal(parseEchoMessage("{roto"), "{roto");
});

Deno.test("parseTaskArgs builds payloads that pass the catalogue's schemas", () => {
  const cases = [
    parseTaskArgs("text", ["hola", "mundo"]),
    parseTaskArgs("numbers", ["4", "8,15"]),
    parseTaskArgs("echo", ['{"x":1}']),
    parseTaskArgs("sleep", ["10"]),
    parseTaskArgs("hash", ["datos"]),
    parseTaskArgs("hash", ["datos", "3"]),
  ];
  assert.deepEqual(cases.map((c) => c.ok && c.value), [
    { type: "text", payload: { text: "hola mundo" } },
    { type: "numbers", payload: { numbers: [4, 8, 15] } },
    { type: "echo", payload: { message: { x: 1 } } },
    { type: "sleep", payload: { ms: 10 } },
    { type: "hash", payload: { data: "datos" } },
    { type: "hash", payload: { data: "datos", iterations: 3 } },
  ]);
  for (const parsed of cases) {
    assert.ok(parsed.ok);
    assert.ok(
      BUILTIN_CATALOG.get(parsed.value.type)?.input.safeParse(parsed.value.payload).success,
    );
  }
});

Deno.test("parseTaskArgs explains missing or bad arguments", () => {
  for (
    const [type, args] of [
      ["text", []],
      ["numbers", ["4", "ocho"]],
      ["echo", []],
      ["sleep", []],
      ["sleep", ["1", "2"]],
      ["sleep", ["70000"]],
      ["hash", []],
      ["hash", ["a", "0"]],
      ["hash", ["a", "b", "c"]],
    ] as const
  ) {
    const parsed = parseTaskArgs(type, args);
    assert.equal(parsed.ok, false, `${type} ${args.join(" ")}`);
    assert.ok(!parsed.ok && parsed.message.length > 0);
  }
});

Deno.test("parseMenuChoice accepts numbers and names", () => {
  assert.equal(parseMenuChoice("1"), "text");
  assert.equal(parseMenuChoice(" 2 "), "numbers");
  assert.equal(parseMenuChoice("5"), "hash");
  assert.equal(parseMenuChoice("6"), "status");
  assert.equal(parseMenuChoice("7"), "ping");
  assert.equal(parseMenuChoice("0"), "exit");
  assert.equal(parseMenuChoice("salir"), "exit");
  assert.equal(parseMenuChoice("números"), "numbers");
  assert.equal(parseMenuChoice("estado"), "status");
  assert.equal(parseMenuChoice("11"), undefined);
  assert.equal(parseMenuChoice(""), undefined);
  assert.equal(parseMenuChoice("abc"), undefined);
});

Deno.test("wantsHelp sees --help, -h and --ayuda only before --", () => {
  assert.equal(wantsHelp(["--ayuda"]), true);
  assert.equal(wantsHelp(["--help"]), true);
  assert.equal(wantsHelp(["enviar", "-h"]), true);
  assert.equal(wantsHelp(["enviar", "texto", "--", "--help"]), false);
  assert.equal(wantsHelp(["ayuda"]), false);
});

Deno.test("parseFileTaskArgs takes texto with no text, hash with optional iterations, and no other type", () => {
  assert.deepEqual(parseFileTaskArgs("text", []), {
    ok: true,
    value: { type: "text", field: "text", payload: {} },
  });
  assert.deepEqual(parseFileTaskArgs("hash", ["10"]), {
    ok: true,
    value: { type: "hash", field: "data", payload: { iterations: 10 } },
  });
  assert.deepEqual(parseFileTaskArgs("hash", []), {
    ok: true,
    value: { type: "hash", field: "data", payload: {} },
  });
  const extra = parseFileTaskArgs("text", ["hola"]);
  assert.equal(extra.ok, false);
  assert.match(extra.ok ? "" : extra.message, /el texto es el del fichero/);
  assert.equal(parseFileTaskArgs("hash", ["0"]).ok, false);
  const other = parseFileTaskArgs("numbers", []);
  assert.equal(other.ok, false);
  assert.match(other.ok ? "" : other.message, /solo sirve con texto y hash, no con números/);
});
