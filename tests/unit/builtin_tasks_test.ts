/**
 * Unit tests of the built-in task types (`shared/tasks/`): their handlers, registered as a worker does.
 *
 * @module
 */
import { ColmenaError } from "../../shared/errors.ts";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { TASK_TYPES } from "../../shared/tasks.ts";
import { BUILTIN_TASKS } from "../../shared/tasks/builtin.ts";
import { INLINE_HASH_ITERATIONS, iteratedSha256 } from "../../shared/tasks/hash.ts";
import { analyzeNumbers } from "../../shared/tasks/numbers_handler.ts";
import { processText } from "../../shared/tasks/text.ts";
import type { TaskLogger } from "../../shared/task_definition.ts";
import { registerDefinitions } from "../../worker/handlers.ts";
import { type TaskContext, TaskRegistry } from "../../worker/registry.ts";

const quiet: TaskLogger = { info: () => {}, warn: () => {}, error: () => {} };

/** A registry with the built-in task types, registered as the worker does. */
function registerBuiltinTasks(registry: TaskRegistry): Promise<TaskRegistry> {
  return registerDefinitions(registry, BUILTIN_TASKS);
}

/** Reference implementation: SHA-256 of the UTF-8 data, then of each previous raw digest. */
function referenceSha256(data: string, iterations: number): string {
  let digest = createHash("sha256").update(data, "utf8").digest();
  for (let i = 1; i < iterations; i++) digest = createHash("sha256").update(digest).digest();
  return digest.toString("hex");
}

Deno.test("processText counts words separated by runs of spaces, tabs and newlines", () => {
  assert.equal(processText("hola mundo").words, 2);
  assert.equal(processText("  hola   mundo\t\tcruel\n\nadiós \r\n fin  ").words, 5);
  assert.equal(processText("una").words, 1);
  assert.equal(processText("a\u00a0b").words, 2);
});

Deno.test("processText counts 0 words in empty and whitespace-only text", () => {
  assert.equal(processText("").words, 0);
  assert.equal(processText("   ").words, 0);
  assert.equal(processText(" \t\n\r\n ").words, 0);
});

Deno.test("processText reverses plain text", () => {
  assert.equal(processText("abc def").reversed, "fed cba");
  assert.equal(processText("").reversed, "");
});

Deno.test("processText reverses by grapheme clusters, keeping a skin-tone emoji intact", () => {
  assert.equal(processText("a👍🏽b").reversed, "b👍🏽a");
  assert.equal(processText("👍🏽👍🏿").reversed, "👍🏿👍🏽");
});

Deno.test("processText reverses by grapheme clusters, keeping flags intact", () => {
  assert.equal(processText("🇪🇸🇫🇷").reversed, "🇫🇷🇪🇸");
  assert.equal(processText("x🇪🇸").reversed, "🇪🇸x");
});

Deno.test("processText reverses by grapheme clusters, keeping a combining accent on its letter", () => {
  const combined = "e\u0301"; // "é" as e + COMBINING ACUTE ACCENT
  assert.equal(processText(`caf${combined}`).reversed, `${combined}fac`);
  assert.equal(processText(`${combined}a`).reversed, `a${combined}`);
});

Deno.test("processText reverses by grapheme clusters, keeping a ZWJ sequence intact", () => {
  const family = "👨\u200d👩\u200d👧";
  assert.equal(processText(`1${family}2`).reversed, `2${family}1`);
});

Deno.test("processText upper-cases the text", () => {
  assert.equal(processText("ñandú café").upper, "ÑANDÚ CAFÉ");
  assert.equal(processText("straße").upper, "STRASSE");
  assert.equal(processText("123 ¡ok!").upper, "123 ¡OK!");
});

Deno.test("processText returns words, reversed and upper together", () => {
  assert.deepEqual(processText("Hola  Mundo"), {
    words: 2,
    reversed: "odnuM  aloH",
    upper: "HOLA  MUNDO",
  });
});

Deno.test("analyzeNumbers gives count, sum, average, minimum and maximum", () => {
  assert.deepEqual(analyzeNumbers([1, 2, 3, 4]), { count: 4, sum: 10, avg: 2.5, min: 1, max: 4 });
});

Deno.test("analyzeNumbers handles negative numbers", () => {
  assert.deepEqual(analyzeNumbers([-5, 3, -1]), { count: 3, sum: -3, avg: -1, min: -5, max: 3 });
  assert.deepEqual(analyzeNumbers([-2, -8]), { count: 2, sum: -10, avg: -5, min: -8, max: -2 });
});

Deno.test("analyzeNumbers handles a single number", () => {
  assert.deepEqual(analyzeNumbers([42]), { count: 1, sum: 42, avg: 42, min: 42, max: 42 });
  assert.deepEqual(analyzeNumbers([0]), { count: 1, sum: 0, avg: 0, min: 0, max: 0 });
});

Deno.test("analyzeNumbers handles fractions", () => {
  const result = analyzeNumbers([0.5, 1.5, -0.25]);
  assert.equal(result.sum, 1.75);
  assert.equal(result.min, -0.25);
  assert.equal(result.max, 1.5);
});

Deno.test("analyzeNumbers works on a 200000-element array", () => {
  const numbers = Array.from({ length: 200_000 }, (_, i) => i);
  assert.deepEqual(analyzeNumbers(numbers), {
    count: 200_000,
    sum: 19_999_900_000,
    avg: 99_999.5,
    min: 0,
    max: 199_999,
  });
});

Deno.test('iteratedSha256 matches the FIPS 180-2 vector for one iteration of "abc"', () => {
  assert.equal(
    iteratedSha256("abc", 1),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("iteratedSha256 hashes the raw digest, not its hex, on the second iteration", () => {
  assert.equal(
    iteratedSha256("abc", 2),
    "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358",
  );
});

Deno.test("iteratedSha256 hashes the empty string", () => {
  assert.equal(
    iteratedSha256("", 1),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("iteratedSha256 encodes the data as UTF-8", () => {
  assert.equal(iteratedSha256("ñandú 👍", 1), referenceSha256("ñandú 👍", 1));
  assert.notEqual(iteratedSha256("ñ", 1), iteratedSha256("n", 1));
});

Deno.test("iteratedSha256 matches a reference chain of 3 iterations", () => {
  assert.equal(iteratedSha256("abc", 3), referenceSha256("abc", 3));
});

Deno.test("iteratedSha256 matches a reference chain of 50000 iterations", () => {
  assert.equal(iteratedSha256("abc", 50_000), referenceSha256("abc", 50_000));
});

Deno.test("the built-in hash handler runs long chains in a thread and short ones inline, alike", async () => {
  await using registry = await registerBuiltinTasks(new TaskRegistry());
  const registration = registry.get("hash");
  assert.ok(registration?.isolated);
  const context: TaskContext = {
    signal: new AbortController().signal,
    taskId: "t-4",
    attempt: 1,
    log: quiet,
  };
  for (const iterations of [INLINE_HASH_ITERATIONS, INLINE_HASH_ITERATIONS + 1, 30_000]) {
    assert.deepEqual(await registration.handler({ data: "colmena", iterations }, context), {
      sha256: referenceSha256("colmena", iterations),
    });
  }
});

Deno.test("the built-in hash handler rejects with the abort reason when a long chain is aborted", async () => {
  await using registry = await registerBuiltinTasks(new TaskRegistry());
  const registration = registry.get("hash");
  assert.ok(registration);
  const controller = new AbortController();
  const reason = new ColmenaError("TIMEOUT");
  const pending = registration.handler({ data: "abc", iterations: 1_000_000 }, {
    signal: controller.signal,
    taskId: "t-5",
    attempt: 1,
    log: quiet,
  });
  setTimeout(() => controller.abort(reason), 50);
  await assert.rejects(Promise.resolve(pending), (err: unknown) => {
    assert.equal(err, reason);
    return true;
  });
});

Deno.test("registerDefinitions registers every built-in task type", async () => {
  const registry = await registerBuiltinTasks(new TaskRegistry());
  assert.deepEqual([...registry.names()].sort(), [...TASK_TYPES].sort());
  for (const name of TASK_TYPES) assert.equal(registry.get(name)?.definition.name, name);
});

Deno.test("registerDefinitions returns the registry it was given", async () => {
  const registry = new TaskRegistry();
  assert.equal(await registerBuiltinTasks(registry), registry);
});

Deno.test("the built-in handlers return outputs that pass their output schemas", async () => {
  const registry = await registerBuiltinTasks(new TaskRegistry());
  const context: TaskContext = {
    signal: new AbortController().signal,
    taskId: "t-1",
    attempt: 1,
    log: quiet,
  };
  const cases: [string, unknown, unknown][] = [
    ["text", { text: "a b" }, { words: 2, reversed: "b a", upper: "A B" }],
    ["numbers", { numbers: [2, 4] }, { count: 2, sum: 6, avg: 3, min: 2, max: 4 }],
    ["echo", { message: { a: [null] } }, { message: { a: [null] } }],
    ["hash", { data: "abc", iterations: 1 }, {
      sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    }],
  ];
  for (const [name, payload, expected] of cases) {
    const registration = registry.get(name);
    assert.ok(registration, name);
    const output = await registration.handler(payload, context);
    assert.deepEqual(output, expected, name);
    assert.ok(registration.definition.output.safeParse(output).success, name);
  }
});

Deno.test("the built-in sleep handler waits and reports a non-negative integer", async () => {
  const registration = (await registerBuiltinTasks(new TaskRegistry())).get("sleep");
  assert.ok(registration);
  const context: TaskContext = {
    signal: new AbortController().signal,
    taskId: "t-2",
    attempt: 1,
    log: quiet,
  };
  const output = await registration.handler({ ms: 1 }, context);
  assert.ok(registration.definition.output.safeParse(output).success);
});

Deno.test("the built-in sleep handler rejects when its signal aborts", async () => {
  const registration = (await registerBuiltinTasks(new TaskRegistry())).get("sleep");
  assert.ok(registration);
  const controller = new AbortController();
  const pending = registration.handler({ ms: 60_000 }, {
    signal: controller.signal,
    taskId: "t-3",
    attempt: 1,
    log: quiet,
  });
  controller.abort();
  await assert.rejects(Promise.resolve(pending), (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.equal(err.name, "AbortError");
    return true;
  });
});

Deno.test("analyzeNumbers refuses a sum that overflows with a permanent INVALID_PAYLOAD", () => {
  assert.throws(
    () => analyzeNumbers([1.7e308, 1.7e308]),
    (err) => err instanceof ColmenaError && err.code === "INVALID_PAYLOAD" && !err.retryable,
  );
});
