/**
 * Shortened task ids: a unique prefix resolves to the full id; several matches are `AMBIGUOUS_ID`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import { findVisibleTask, newTaskId, resolveTaskIdPrefix } from "../../server/task_ids.ts";

/** A finished record made from a result alone, with a chosen id. */
function finished(taskId: string) {
  return {
    taskId,
    taskType: "echo",
    origin: "s1",
    status: "succeeded" as const,
    output: { message: 1 },
    worker: "w1",
    durationMs: 1,
    startedAt: "2025-01-01T00:00:00.000Z",
    finishedAt: "2025-01-01T00:00:00.001Z",
    attempt: 1,
  };
}

Deno.test("a unique prefix resolves to its task id; several matches are AMBIGUOUS_ID saying how many", async () => {
  const store = new MemoryTaskStore();
  for (const taskId of ["abcdef01-0001", "abcdef01-0002", "abcdef01-0003", "abcdef02-0001"]) {
    await store.complete(finished(taskId));
  }
  assert.equal(await resolveTaskIdPrefix(store, "abcdef02"), "abcdef02-0001");
  assert.equal(await resolveTaskIdPrefix(store, "ABCDEF02-0"), "abcdef02-0001");
  assert.equal(await resolveTaskIdPrefix(store, "abcdef03"), undefined);
  assert.equal(await resolveTaskIdPrefix(store, "abcdef0"), undefined);
  assert.equal(await resolveTaskIdPrefix(store, "abcdef0*"), undefined);
  await assert.rejects(resolveTaskIdPrefix(store, "abcdef01"), (err: unknown) => {
    assert.ok(err instanceof ColmenaError);
    assert.equal(err.code, "AMBIGUOUS_ID");
    assert.equal(err.retryable, false);
    assert.match(err.message, /coincide con 3 tareas/);
    return true;
  });
});

Deno.test("an ambiguous prefix of more than 100 tasks says so without reading them all", async () => {
  const store = new MemoryTaskStore();
  for (let i = 0; i < 150; i++) {
    await store.complete(finished(`abcdef01-${String(i).padStart(4, "0")}`));
  }
  await assert.rejects(resolveTaskIdPrefix(store, "abcdef01"), /más de 100 tareas/);
});

Deno.test("a principal's prefix counts only its own tasks: another's neither matches nor makes it ambiguous", async () => {
  const store = new MemoryTaskStore();
  const task = (taskId: string, owner: string) => ({
    taskId,
    taskType: "echo",
    priority: 0,
    client: { name: owner, kind: "cli" as const },
    submittedAt: "2025-01-01T00:00:00.000Z",
    origin: "s1",
    maxAttempts: 1,
    timeoutMs: 1_000,
    owner,
  });
  await store.create(task("abcdef01-0001", "ana"));
  await store.create(task("abcdef01-0002", "bob"));
  const ana = { name: "ana", role: "cliente" as const };
  const eve = { name: "eve", role: "cliente" as const };
  const root = { name: "root", role: "admin" as const };
  assert.equal((await findVisibleTask(store, "abcdef01", ana))?.taskId, "abcdef01-0001");
  assert.equal(await findVisibleTask(store, "abcdef01", eve), undefined);
  assert.equal(await findVisibleTask(store, "abcdef01-0002", ana), undefined, "a full id too");
  assert.equal((await findVisibleTask(store, "abcdef01-0002", root))?.owner, "bob");
  await assert.rejects(findVisibleTask(store, "abcdef01", root), /coincide con 2 tareas/);
});

Deno.test("new task ids are version 8 UUIDs whose first 8 digits increase from one id to the next", () => {
  const ids = Array.from({ length: 10_000 }, newTaskId);
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) {
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  }
  // Made in a row (many in one microsecond), each leads with a larger counter, modulo its 2³² wrap.
  const counters = ids.map((id) => parseInt(id.slice(0, 8), 16));
  for (let i = 1; i < counters.length; i++) {
    const ahead = (counters[i]! - counters[i - 1]! + 2 ** 32) % 2 ** 32;
    assert.ok(ahead > 0 && ahead < 2 ** 31, `id ${i} does not follow id ${i - 1}`);
  }
  // The rest is random: no two ids share their last 12 digits.
  assert.equal(new Set(ids.map((id) => id.slice(24))).size, ids.length);
});
