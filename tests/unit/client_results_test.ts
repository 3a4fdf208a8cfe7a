/**
 * Unit tests of the client's results: turning `result` frames into `TaskResult`s, and handing them out.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import type { ResultPush } from "../../shared/protocol.ts";
import { type TaskResult, TaskResults, toTaskResult } from "../../client/results.ts";
import { BUILTIN_CATALOG } from "../../shared/catalog.ts";

function frame(taskId: string, extra: Partial<ResultPush> = {}): ResultPush {
  return {
    type: "result",
    taskId,
    taskType: "echo",
    status: "succeeded",
    output: { message: taskId },
    worker: "worker1",
    durationMs: 3,
    ...extra,
  };
}

function offline(watched: string[][] = [], missing: string[] = []): TaskResults {
  return new TaskResults({
    watch: (taskIds) => {
      watched.push([...taskIds]);
      return Promise.resolve({ missing: taskIds.filter((id) => missing.includes(id)) });
    },
    fetchOutput: (ref) => Promise.resolve({ fetched: ref }),
  });
}

Deno.test("toTaskResult keeps the output, the attempt and the output reference of a success", () => {
  const result = toTaskResult(frame("t1", { attempts: 2, outputRef: "outputs/t1" }));
  assert.deepEqual(result, {
    taskId: "t1",
    taskType: "echo",
    worker: "worker1",
    durationMs: 3,
    attempts: 2,
    outputRef: "outputs/t1",
    status: "succeeded",
    output: { message: "t1" },
  });
});

Deno.test("toTaskResult rebuilds a failure's wire error, and names the cause when the frame has none", () => {
  const failed = toTaskResult(
    frame("t1", { status: "failed", error: { code: "INVALID_PAYLOAD", message: "mal" } }),
  );
  assert.equal(failed.status, "failed");
  if (failed.status === "failed") {
    assert.ok(failed.error instanceof ColmenaError);
    assert.equal(failed.error.code, "INVALID_PAYLOAD");
    assert.equal(failed.error.message, "mal");
  }
  const cancelled = toTaskResult(frame("t2", { status: "cancelled" }));
  if (cancelled.status !== "succeeded") assert.equal(cancelled.error.code, "CANCELLED");
  const bare = toTaskResult(frame("t3", { status: "failed" }));
  if (bare.status !== "succeeded") assert.equal(bare.error.code, "TASK_FAILED");
});

Deno.test("TaskResults announces a result once, and keeps it for a later result() call", async () => {
  const watched: string[][] = [];
  const results = offline(watched);
  const seen: TaskResult[] = [];
  results.onResult((r) => seen.push(r));
  results.accepted("t1");
  results.receive(frame("t1"));
  results.receive(frame("t1"));
  assert.equal(seen.length, 1);
  const result = await results.result("t1");
  assert.equal(result, seen[0]);
  assert.deepEqual(watched, []);
});

Deno.test("TaskResults watches a task not on its way here, and rejects NOT_FOUND when none has its id", async () => {
  const watched: string[][] = [];
  const results = offline(watched, ["nope"]);
  const waiting = results.result("elsewhere");
  await assert.rejects(
    () => results.result("nope"),
    (err) => err instanceof ColmenaError && err.code === "NOT_FOUND",
  );
  results.receive(frame("elsewhere"));
  assert.equal((await waiting).taskId, "elsewhere");
  assert.deepEqual(watched, [["elsewhere"], ["nope"]]);
});

Deno.test("TaskResults fetches a large output into the result, and rewatches what is still awaited", async () => {
  const watched: string[][] = [];
  const results = offline(watched, ["lost"]);
  results.accepted("big");
  results.accepted("lost");
  const lost = results.result("lost");
  assert.deepEqual(results.awaited(), ["lost", "big"]);
  await results.rewatch(results.awaited());
  await assert.rejects(
    () => lost,
    (err) => err instanceof ColmenaError && err.code === "NOT_FOUND",
  );
  results.receive(frame("big", { output: undefined, outputRef: "outputs/big" }));
  const big = await results.result("big");
  assert.equal(big.status, "succeeded");
  if (big.status === "succeeded") assert.deepEqual(big.output, { fetched: "outputs/big" });
  assert.equal(big.outputRef, "outputs/big");
});

Deno.test("TaskResults rejects waiters on close but still hands out what it kept", async () => {
  const results = offline();
  results.accepted("t1");
  results.accepted("t2");
  results.receive(frame("t2"));
  const waiting = results.result("t1");
  results.close(new ColmenaError("CONNECTION_CLOSED"));
  await assert.rejects(
    () => waiting,
    (err) => err instanceof ColmenaError && err.code === "CONNECTION_CLOSED",
  );
  assert.equal((await results.result("t2")).taskId, "t2");
  await assert.rejects(
    () => results.result("t3"),
    (err) => err instanceof ColmenaError && err.code === "CONNECTION_CLOSED",
  );
});

Deno.test("toTaskResult checks an output against its type's schema in the client's catalogue", () => {
  const catalog = BUILTIN_CATALOG;
  const good = toTaskResult(frame("t1", { taskType: "numbers", output: numbersOutput() }), catalog);
  assert.equal(good.status, "succeeded");
  const bad = toTaskResult(frame("t2", { taskType: "numbers", output: { count: "3" } }), catalog);
  assert.equal(bad.status, "failed");
  assert.ok(bad.status === "failed" && bad.error.code === "TASK_FAILED");
  assert.match(
    bad.status === "failed" ? bad.error.message : "",
    /La salida de "numbers" no cumple el esquema de este cliente: count/,
  );
  // A type the client does not know, and an output still to download, pass as they come.
  assert.equal(
    toTaskResult(frame("t3", { taskType: "video", output: 1 }), catalog).status,
    "succeeded",
  );
  const byRef = toTaskResult(
    frame("t4", { taskType: "numbers", output: undefined, outputRef: "tasks/t4/output" }),
    catalog,
  );
  assert.equal(byRef.status, "succeeded");
});

function numbersOutput() {
  return { count: 1, sum: 2, avg: 2, min: 2, max: 2 };
}
