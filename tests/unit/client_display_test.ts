/**
 * The CLI shows server-provided text (client and worker names, error messages, outputs) with control
 * characters as visible escapes: nothing another client or a worker sends can drive the terminal.
 */
import assert from "node:assert/strict";
import { displayText } from "../../client/display.ts";
import { formatError, formatTaskView } from "../../client/format.ts";
import { formatHistory } from "../../client/history.ts";
import { formatDeadLetters, formatWorkers } from "../../client/admin.ts";
import type { TaskView } from "../../shared/protocol.ts";

const ESC = "\x1b";
const HOSTILE = `${ESC}]0;título robado\x07${ESC}[2J${ESC}[31mrojo\u202eodnum\x9b1m`;

function assertSafe(text: string): void {
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === "\n") continue;
    assert.ok(
      !(code < 0x20 || (code >= 0x7f && code < 0xa0) || (code >= 0x202a && code <= 0x202e)),
      `raw control character U+${code.toString(16)} in ${JSON.stringify(text)}`,
    );
  }
}

const view: TaskView = {
  taskId: "0b7e2f10-aaaa-4000-8000-000000000001",
  taskType: "echo",
  status: "succeeded",
  priority: 0,
  client: { name: HOSTILE, kind: "cli" },
  submittedAt: "2026-01-01T00:00:00.000Z",
  startedAt: "2026-01-01T00:00:01.000Z",
  finishedAt: "2026-01-01T00:00:02.000Z",
  worker: HOSTILE,
  durationMs: 3,
  output: { message: HOSTILE },
} as TaskView;

Deno.test("displayText shows control characters and bidi overrides as escapes, and keeps the rest", () => {
  assert.equal(displayText(`a${ESC}[2Jb\u202ec ñ 👍`), "a\\x1b[2Jb\\u202ec ñ 👍");
  assert.equal(displayText("sin nada raro"), "sin nada raro");
});

Deno.test("historial, estado, workers and dlq listar print hostile names and messages inert", () => {
  assertSafe(formatHistory([view]));
  assertSafe(formatTaskView(view));
  assert.match(formatTaskView(view), /cliente: +\\x1b\]0;título robado\\x07/);
  assertSafe(formatError({ code: "INTERNAL", message: HOSTILE }));
  assertSafe(formatWorkers(
    [{
      worker: HOSTILE,
      host: HOSTILE,
      pid: 1,
      concurrency: 1,
      inProgress: 0,
      processed: 0,
      failed: 0,
      startedAt: "2026-01-01T00:00:00.000Z",
      lastSeen: "2026-01-01T00:00:00.000Z",
      stopping: false,
      types: [HOSTILE],
    }] as unknown as Parameters<typeof formatWorkers>[0],
    Date.parse("2026-01-01T00:00:01Z"),
  ));
  assertSafe(formatDeadLetters([{
    taskId: HOSTILE,
    taskType: "echo",
    attempt: 1,
    maxAttempts: 1,
    client: { name: HOSTILE, kind: "cli" },
    submittedAt: "",
    error: { code: "X", message: HOSTILE },
    deadAt: null,
  }]));
});
