/**
 * Unit tests of `worker/runner.ts`'s report flushes, with a broker that only records what it is given:
 * with no report awaiting its confirm a result leaves at the end of the callback it ended in, and while
 * one does, results wait for the end of the turn and share a message.
 *
 * @module
 */
import assert from "node:assert/strict";
import process from "node:process";
import { setImmediate } from "node:timers";
import type { ReportBatch, TaskDelivery, WorkerBroker } from "../../shared/ports.ts";
import { QUEUE_FORMAT, type TaskMessage } from "../../shared/queue_messages.ts";
import { echoTask } from "../../shared/tasks/echo.ts";
import { TaskRegistry } from "../../worker/registry.ts";
import { TaskRunner } from "../../worker/runner.ts";

function _delivery(): TaskDelivery {
  const task: TaskMessage = {
    v: QUEUE_FORMAT,
    taskId: crypto.randomUUID(),
    type: "echo",
    payload: { message: "hola" },
    client: { name: "flush", kind: "cli" },
    origin: "srv",
    priority: 0,
    timeoutMs: 1_000,
    submittedAt: new Date().toISOString(),
    attempt: 1,
    maxAttempts: 1,
    deliveries: 1,
  };
  return { task, redelivered: false };
}

/** A runner with a synchronous echo handler, on a broker whose report confirms the test settles. */
function _runner() {
  const reports: string[][] = [];
  const confirms: PromiseWithResolvers<void>[] = [];
  const broker = {
    isStale: () => false,
    ack: () => {},
    publishReports(batch: ReportBatch): Promise<void> {
      reports.push(batch.results.map((r) => r.taskId));
      const confirm = Promise.withResolvers<void>();
      confirms.push(confirm);
      return confirm.promise;
    },
  } as unknown as WorkerBroker;
  const registry = new TaskRegistry().register(echoTask, ({ message }) => ({ message }));
  const runner = new TaskRunner({ name: "flush", registry, verbose: false, retryBaseMs: 10 });
  runner.attach(broker);
  return { runner, reports, confirms, registry };
}

/** Resolves after the callbacks queued so far with `process.nextTick`, before the next turn. */
function _endOfCallback(): Promise<void> {
  return new Promise((resolve) => process.nextTick(resolve));
}

Deno.test("with no report awaiting its confirm, a result is published before the next turn", async () => {
  const { runner, reports, confirms, registry } = _runner();
  const a = _delivery();
  const b = _delivery();
  runner.handle(a);
  runner.handle(b);
  await _endOfCallback();
  await _endOfCallback();
  // Both ended in the same callback: one message, and no turn waited.
  assert.deepEqual(reports, [[a.task!.taskId, b.task!.taskId]]);
  for (const c of confirms) c.resolve();
  await runner.drain(1_000);
  registry.close();
});

Deno.test("while a report awaits its confirm, results wait for the end of the turn and go together", async () => {
  const { runner, reports, confirms, registry } = _runner();
  runner.handle(_delivery());
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(reports.length, 1);
  const c = _delivery();
  const d = _delivery();
  runner.handle(c);
  await _endOfCallback();
  runner.handle(d);
  await _endOfCallback();
  assert.equal(reports.length, 1, "published before the end of the turn under load");
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(reports[1], [c.task!.taskId, d.task!.taskId]);
  for (const confirm of confirms) confirm.resolve();
  await runner.drain(1_000);
  registry.close();
});
