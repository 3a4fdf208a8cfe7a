/**
 * The conformance suite of the `TaskStore` port: every implementation registers it once and must pass it
 * whole, so that the memory, SQLite and PostgreSQL stores answer alike.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import type { NewTask, TaskStore } from "../../shared/ports.ts";
import type { ClientKind, TaskStatus, TaskView } from "../../shared/protocol.ts";
import type { ResultMessage, StartedNotice } from "../../shared/queue_messages.ts";

/** One store under test, with what it takes to reopen its data and to clean up after it. */
export interface StoreHarness extends AsyncDisposable {
  /** The store under test. */
  readonly store: TaskStore;
  /**
   * Opens another store on the same data (the same file, the same schema), running its start-up again;
   * the harness closes it on disposal. Absent for a store that keeps nothing beyond its process.
   */
  openAgain?(): Promise<TaskStore>;
}

/** Options of {@linkcode storeConformance}. */
export interface ConformanceOptions {
  /** Registers the tests as ignored (a service is down). @defaultValue `false` */
  ignore?: boolean;
  /**
   * Whether the store keeps its records beyond its process; the harness must then offer `openAgain`, and
   * the restart and migration tests are registered. @defaultValue `false`
   */
  persistent?: boolean;
}

const T0 = Date.parse("2025-01-01T00:00:00.000Z");

/** The ISO time `ms` milliseconds after the suite's epoch. */
function at(ms: number): string {
  return new Date(T0 + ms).toISOString();
}

function newTask(taskId: string, overrides: Partial<NewTask> = {}): NewTask {
  return {
    taskId,
    taskType: "text",
    priority: 3,
    client: { name: "web-1", kind: "web" },
    submittedAt: at(0),
    origin: "s1",
    payload: { text: "hola" },
    maxAttempts: 3,
    timeoutMs: 30_000,
    ...overrides,
  };
}

function started(taskId: string, overrides: Partial<StartedNotice> = {}): StartedNotice {
  return { taskId, origin: "s1", worker: "w1", startedAt: at(1_000), attempt: 1, ...overrides };
}

function result(taskId: string, overrides: Partial<ResultMessage> = {}): ResultMessage {
  return {
    taskId,
    taskType: "text",
    origin: "s1",
    status: "succeeded",
    output: { words: 1, reversed: "aloh", upper: "HOLA" },
    worker: "w1",
    durationMs: 12,
    startedAt: at(1_000),
    finishedAt: at(1_012),
    attempt: 1,
    ...overrides,
  };
}

const queuedView = (taskId: string): TaskView => ({
  taskId,
  taskType: "text",
  status: "queued",
  priority: 3,
  client: { name: "web-1", kind: "web" },
  submittedAt: at(0),
  attempts: 0,
  maxAttempts: 3,
  owner: "web-1",
});

async function assertStoreUnavailable(promise: Promise<unknown>): Promise<void> {
  await assert.rejects(
    promise,
    (err) => err instanceof ColmenaError && err.code === "STORE_UNAVAILABLE",
  );
}

/**
 * Registers the conformance tests of one `TaskStore` implementation, named `"<name>: <behaviour>"`. Each
 * test gets a fresh harness from `makeStore` and disposes of it at its end. The restart and migration tests
 * are registered only for a `persistent` store.
 */
export function storeConformance(
  name: string,
  makeStore: () => Promise<StoreHarness>,
  options: ConformanceOptions = {},
): void {
  const ignore = options.ignore ?? false;

  function test(title: string, fn: (harness: StoreHarness) => Promise<void>): void {
    Deno.test({
      name: `${name}: ${title}`,
      ignore,
      async fn() {
        await using harness = await makeStore();
        await fn(harness);
      },
    });
  }

  function persistentTest(
    title: string,
    fn: (harness: StoreHarness, openAgain: () => Promise<TaskStore>) => Promise<void>,
  ): void {
    if (options.persistent !== true) return;
    test(title, async (harness) => {
      assert.ok(harness.openAgain !== undefined, "a persistent store's harness offers openAgain");
      await fn(harness, harness.openAgain.bind(harness));
    });
  }

  test("create records a queued task with no attempts, and get never shows the payload", async ({ store }) => {
    assert.deepEqual(await store.create(newTask("t1")), { taskId: "t1", created: true });
    assert.deepEqual(await store.get("t1"), queuedView("t1"));
  });

  test("matchIds finds the ids that start with a prefix, by a range of the key, and nothing else", async ({ store }) => {
    const ids = [
      "0b7e2f10-aaaa-4000-8000-000000000001",
      "0b7e2f10-aaaa-4000-8000-000000000002",
      "0b7e2f1f-bbbb-4000-8000-000000000003",
      "0b7e2f2a-cccc-4000-8000-000000000004",
      // Just past the range of "0b7e2f1": the last character incremented.
      "0b7e2f2-dddd",
    ];
    for (const taskId of ids.toReversed()) await store.create(newTask(taskId));
    assert.deepEqual(await store.matchIds("0b7e2f10", 10), ids.slice(0, 2));
    assert.deepEqual(await store.matchIds("0b7e2f10", 1), ids.slice(0, 1));
    assert.deepEqual(await store.matchIds("0b7e2f1", 10), []); // shorter than 8 characters
    assert.deepEqual(await store.matchIds("0b7e2f1f", 10), [ids[2]]);
    assert.deepEqual(await store.matchIds("0b7e2f10-aaaa-4000-8000-000000000002", 10), [ids[1]]);
    assert.deepEqual(await store.matchIds("0b7e2f2-", 10), ["0b7e2f2-dddd"]);
    assert.deepEqual(await store.matchIds("0b7e2f2a", 10), [ids[3]]);
    assert.deepEqual(await store.matchIds("ffffffff", 10), []);
    // Only 0-9, a-f and "-": anything else (SQL wildcards and quotes included) matches nothing.
    for (
      const bad of ["0b7e2f1%", "0b7e2f1_", "0B7E2F10", "0b7e2f10' OR '1'='1", "0b7e2f10\u0000"]
    ) {
      assert.deepEqual(await store.matchIds(bad, 10), [], bad);
    }
  });

  test("reopen puts a failed task back to queued with no attempts, error or output", async ({ store }) => {
    await store.create(newTask("t1"));
    const error = { code: "TASK_FAILED" as const, message: "falló (tras 3 de 3 intentos)" };
    const { output: _, ...failed } = result("t1", { status: "failed", error, attempt: 3 });
    assert.equal(await store.complete(failed), true);
    await store.reopen("t1");
    assert.deepEqual(await store.get("t1"), queuedView("t1"));
    // Its new result counts as the first one again.
    assert.equal(await store.complete(result("t1")), true);
    assert.equal((await store.get("t1"))?.status, "succeeded");
  });

  test("reopen leaves a task that is not final, and an unknown one, as they are", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.markStarted(started("t1"));
    await store.reopen("t1");
    assert.equal((await store.get("t1"))?.status, "running");
    await store.reopen("fantasma");
    assert.equal(await store.get("fantasma"), undefined);
  });

  test("a result stored as an object keeps its reference and prune returns it", async ({ store }) => {
    await store.create(newTask("t1"));
    const { output: _, ...big } = result("t1", {
      outputRef: "tasks/t1/output",
      outputBytes: 10_000_000,
      finishedAt: at(2_000),
    });
    assert.equal(await store.complete(big), true);
    const view = await store.get("t1");
    assert.equal(view?.outputRef, "tasks/t1/output");
    assert.equal(view?.output, undefined);
    const pruned = await store.prune(at(10_000), 10);
    assert.equal(pruned.removed, 1);
    assert.deepEqual(pruned.blobKeys, ["tasks/t1/output"]);
  });

  test("prune returns the payload, file and output objects of a task, and reopen keeps the file", async ({ store }) => {
    await store.create(
      newTask("t1", { payloadRef: "tasks/t1/payload", fileRef: "uploads/f1", payload: undefined }),
    );
    const { output: _, ...big } = result("t1", {
      outputRef: "tasks/t1/output",
      outputBytes: 10_000_000,
      finishedAt: at(2_000),
    });
    assert.equal(await store.complete(big), true);
    await store.reopen("t1");
    assert.equal(await store.complete({ ...big, attempt: 2 }), true);
    const pruned = await store.prune(at(10_000), 10);
    assert.equal(pruned.removed, 1);
    assert.deepEqual(pruned.blobKeys.toSorted(), [
      "tasks/t1/output",
      "tasks/t1/payload",
      "uploads/f1",
    ]);
  });

  test("prune deletes an uploaded file several tasks read only with the last of them", async ({ store }) => {
    await store.create(newTask("t1", { fileRef: "uploads/compartido" }));
    await store.create(newTask("t2", { fileRef: "uploads/compartido" }));
    await store.create(newTask("t3", { fileRef: "uploads/compartido" }));
    await store.complete(result("t1", { finishedAt: at(1_000) }));
    await store.complete(result("t2", { finishedAt: at(2_000) }));
    // t3 is still queued: the file stays while any task may read it.
    assert.deepEqual(await store.prune(at(10_000), 100), { removed: 2, blobKeys: [] });
    await store.complete(result("t3", { finishedAt: at(3_000) }));
    assert.deepEqual(await store.prune(at(10_000), 100), {
      removed: 1,
      blobKeys: ["uploads/compartido"],
    });
  });

  test("prune deletes a shared upload once when its last readers go in the same batch", async ({ store }) => {
    await store.create(newTask("t1", { fileRef: "uploads/f" }));
    await store.create(newTask("t2", { fileRef: "uploads/f" }));
    await store.complete(result("t1", { finishedAt: at(1_000) }));
    await store.complete(result("t2", { finishedAt: at(2_000) }));
    assert.deepEqual(await store.prune(at(10_000), 100), { removed: 2, blobKeys: ["uploads/f"] });
  });

  test("filesInUse says which uploaded files some record still reads", async ({ store }) => {
    assert.deepEqual(await store.filesInUse([]), new Set());
    await store.create(newTask("t1", { fileRef: "uploads/leido" }));
    await store.create(newTask("t2", { fileRef: "uploads/terminado" }));
    await store.complete(result("t2", { finishedAt: at(1_000) }));
    assert.deepEqual(
      await store.filesInUse(["uploads/leido", "uploads/terminado", "uploads/nadie"]),
      new Set(["uploads/leido", "uploads/terminado"]),
    );
    await store.prune(at(10_000), 100);
    assert.deepEqual(
      await store.filesInUse(["uploads/leido", "uploads/terminado"]),
      new Set(["uploads/leido"]),
    );
  });

  test("get returns undefined for an unknown task", async ({ store }) => {
    assert.equal(await store.get("nope"), undefined);
    assert.equal(await store.get("toString"), undefined);
  });

  test("create with a reused idempotency key returns the first task and writes nothing", async ({ store }) => {
    const first = await store.create(newTask("t1", { idempotencyKey: "clave" }));
    const second = await store.create(newTask("t2", { idempotencyKey: "clave" }));
    assert.deepEqual(first, { taskId: "t1", created: true });
    assert.deepEqual(second, { taskId: "t1", created: false });
    assert.equal(await store.get("t2"), undefined);
    assert.equal((await store.list({ limit: 10 })).items.length, 1);
  });

  test("a task is published once markPublished says so, and stays so; unknown tasks are not", async ({ store }) => {
    await store.create(newTask("t1", { idempotencyKey: "clave" }));
    assert.equal(await store.published("t1"), false);
    await store.markPublished("t1");
    assert.equal(await store.published("t1"), true);
    await store.markPublished("t1");
    assert.equal(await store.published("t1"), true);
    await store.markPublished("nope");
    assert.equal(await store.published("nope"), false);
    // A result does not count as a confirmed publish, and leaves the mark as it was.
    await store.complete(result("huerfana"));
    assert.equal(await store.published("huerfana"), false);
    await store.complete(result("t1"));
    assert.equal(await store.published("t1"), true);
  });

  test("createMany records each task as create would, and a key repeated within the call gives the first task", async ({ store }) => {
    await store.create(newTask("t0", { idempotencyKey: "antes" }));
    const outcomes = await store.createMany([
      newTask("t1"),
      newTask("t2", { idempotencyKey: "clave" }),
      newTask("t3", { idempotencyKey: "clave" }),
      newTask("t4", { idempotencyKey: "antes" }),
      newTask("t5", { idempotencyKey: "otra" }),
    ]);
    assert.deepEqual(outcomes, [
      { taskId: "t1", created: true },
      { taskId: "t2", created: true },
      { taskId: "t2", created: false },
      { taskId: "t0", created: false },
      { taskId: "t5", created: true },
    ]);
    assert.deepEqual(await store.get("t1"), queuedView("t1"));
    assert.equal(await store.get("t3"), undefined);
    assert.equal(await store.get("t4"), undefined);
    assert.equal((await store.list({ limit: 10 })).items.length, 4);
    assert.deepEqual(await store.submission("t5"), {
      ...newTask("t5", { idempotencyKey: "otra" }),
      owner: "web-1",
    });
  });

  test("createMany of more tasks than one statement holds keeps each task's outcome, keys repeated across statements included", async ({ store }) => {
    // SQLite inserts 50 rows a statement: keys repeat within a statement, across two, and with an earlier task.
    await store.create(newTask("t-antes", { idempotencyKey: "antes" }));
    const keys = new Map<number, string>([[3, "a"], [40, "a"], [49, "b"], [50, "b"], [60, "c"], [
      118,
      "c",
    ], [
      119,
      "antes",
    ], [77, "d"]]);
    const tasks = Array.from(
      { length: 120 },
      (_, i) =>
        newTask(
          `t${String(i).padStart(3, "0")}`,
          keys.has(i) ? { idempotencyKey: keys.get(i)! } : {},
        ),
    );
    const outcomes = await store.createMany(tasks);
    const firstOf = new Map<string, string>([["antes", "t-antes"]]);
    const expected = tasks.map((task) => {
      const key = task.idempotencyKey;
      if (key === undefined) return { taskId: task.taskId, created: true };
      const first = firstOf.get(key);
      if (first !== undefined) return { taskId: first, created: false };
      firstOf.set(key, task.taskId);
      return { taskId: task.taskId, created: true };
    });
    assert.deepEqual(outcomes, expected);
    assert.equal(expected.filter((o) => !o.created).length, 4);
    assert.equal((await store.list({ limit: 200 })).items.length, 1 + 120 - 4);
    assert.equal(await store.get("t040"), undefined);
    assert.deepEqual(await store.get("t077"), queuedView("t077"));
    assert.deepEqual(await store.submission("t119"), undefined);
  });

  test("takenKeys gives the keys of the owner that a recorded task holds, and no other", async ({ store }) => {
    if (store.takenKeys === undefined) return; // a shared store (PostgreSQL) does not offer it
    await store.createMany([
      newTask("t1", { idempotencyKey: "a" }),
      newTask("t2", { idempotencyKey: "b", owner: "otro" }),
      ...Array.from({ length: 60 }, (_, i) => newTask(`n${i}`, { idempotencyKey: `k${i}` })),
    ]);
    const asked = ["a", "b", "zz", ...Array.from({ length: 60 }, (_, i) => `k${i * 2}`)];
    const taken = await store.takenKeys("web-1", asked);
    assert.deepEqual(
      [...taken].sort(),
      ["a", ...Array.from({ length: 30 }, (_, i) => `k${i * 2}`)].sort(),
    );
    assert.deepEqual([...await store.takenKeys("otro", ["a", "b"])], ["b"]);
    await store.remove("t1");
    assert.deepEqual([...await store.takenKeys("web-1", ["a"])], []);
  });

  test("markPublishedMany marks each known task published and ignores unknown ones", async ({ store }) => {
    await store.createMany([
      newTask("t1", { idempotencyKey: "a" }),
      newTask("t2", { idempotencyKey: "b" }),
      newTask("t3", { idempotencyKey: "c" }),
    ]);
    await store.markPublishedMany(["t1", "nope", "t3"]);
    assert.equal(await store.published("t1"), true);
    assert.equal(await store.published("t2"), false);
    assert.equal(await store.published("t3"), true);
    assert.equal(await store.published("nope"), false);
  });

  test("markPublishedMany of more tasks than one statement holds marks each of them", async ({ store }) => {
    // SQLite marks 50 tasks a statement.
    const ids = Array.from({ length: 120 }, (_, i) => `t${String(i).padStart(3, "0")}`);
    await store.createMany(ids.map((id) => newTask(id, { idempotencyKey: id })));
    await store.markPublishedMany([...ids.slice(0, 60), "nope", ...ids.slice(61)]);
    const marked = await Promise.all(ids.map((id) => store.published(id)));
    assert.deepEqual(
      ids.filter((_, i) => !marked[i]),
      ["t060"],
    );
  });

  test("submission returns the task as created, payload and references included", async ({ store }) => {
    const inline = newTask("t1", {
      payload: { text: "hola", n: [1, 2.5, null], nested: { ñ: "ü" } },
      idempotencyKey: "clave",
    });
    const referenced = newTask("t2", {
      payload: undefined,
      payloadRef: "tasks/t2/payload",
      fileRef: "uploads/f",
      priority: 9,
      timeoutMs: 5,
    });
    await store.create(inline);
    await store.create(referenced);
    // The owner defaults to the client name.
    assert.deepEqual(await store.submission("t1"), { ...inline, owner: "web-1" });
    const { payload: _none, ...withoutPayload } = referenced;
    assert.deepEqual(await store.submission("t2"), { ...withoutPayload, owner: "web-1" });
  });

  test("submission is undefined for an unknown task and one known only by its result", async ({ store }) => {
    assert.equal(await store.submission("nope"), undefined);
    await store.complete(result("huerfana"));
    assert.equal(await store.submission("huerfana"), undefined);
  });

  test("an idempotency key belongs to one client name", async ({ store }) => {
    await store.create(newTask("t1", { idempotencyKey: "clave" }));
    const other = await store.create(
      newTask("t2", { idempotencyKey: "clave", client: { name: "movil-7", kind: "mobile" } }),
    );
    assert.deepEqual(other, { taskId: "t2", created: true });
    assert.equal((await store.get("t2"))?.client.name, "movil-7");
  });

  test("an idempotency key belongs to one owner, whatever client name it says", async ({ store }) => {
    await store.create(newTask("t1", { idempotencyKey: "clave", owner: "bob" }));
    // Another principal that calls itself like bob's client does not get bob's task.
    const squatter = await store.create(newTask("t2", { idempotencyKey: "clave", owner: "eve" }));
    assert.deepEqual(squatter, { taskId: "t2", created: true });
    const bobAgain = await store.create(
      newTask("t3", {
        idempotencyKey: "clave",
        owner: "bob",
        client: { name: "otro", kind: "cli" },
      }),
    );
    assert.deepEqual(bobAgain, { taskId: "t1", created: false });
    assert.equal((await store.get("t1"))?.owner, "bob");
    assert.equal((await store.get("t2"))?.owner, "eve");
  });

  test("list filters by owner, and a record made from a result alone has no owner", async ({ store }) => {
    await store.create(newTask("t1", { owner: "bob" }));
    await store.create(newTask("t2", { owner: "eve", submittedAt: at(1) }));
    await store.create(newTask("t3", { owner: "bob", submittedAt: at(2) }));
    await store.complete(result("huerfana"));
    const bob = await store.list({ limit: 10, owner: "bob" });
    assert.deepEqual(bob.items.map((view) => view.taskId), ["t3", "t1"]);
    assert.deepEqual((await store.list({ limit: 10, owner: "nadie" })).items, []);
    assert.equal((await store.get("huerfana"))?.owner, undefined);
  });

  test("create of a task id already recorded changes nothing", async ({ store }) => {
    await store.create(newTask("t1"));
    const again = await store.create(newTask("t1", { priority: 9, taskType: "echo" }));
    assert.deepEqual(again, { taskId: "t1", created: false });
    assert.deepEqual(await store.get("t1"), queuedView("t1"));
  });

  test("50 concurrent creates with one idempotency key create exactly one task", async ({ store }) => {
    const outcomes = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => store.create(newTask(`t${i}`, { idempotencyKey: "misma" })),
      ),
    );
    const created = outcomes.filter((outcome) => outcome.created);
    assert.equal(created.length, 1);
    const winner = created[0]?.taskId;
    assert.ok(winner !== undefined);
    for (const outcome of outcomes) assert.equal(outcome.taskId, winner);
    assert.equal((await store.list({ limit: 100 })).items.length, 1);
  });

  test("1,000 concurrent creates are all recorded and readable", async (harness) => {
    const ids = Array.from({ length: 1_000 }, (_, i) => `t${String(i).padStart(4, "0")}`);
    const outcomes = await Promise.all(
      ids.map((id, i) => harness.store.create(newTask(id, { submittedAt: at(i) }))),
    );
    assert.ok(outcomes.every((outcome, i) => outcome.created && outcome.taskId === ids[i]));
    // A durable store shows them to a second store opened on the same data.
    const reader = harness.openAgain === undefined ? harness.store : await harness.openAgain();
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await reader.list({ limit: 500, ...(cursor === undefined ? {} : { cursor }) });
      seen.push(...page.items.map((item) => item.taskId));
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    assert.deepEqual(seen, ids.toReversed());
    assert.deepEqual(await reader.get("t0999"), { ...queuedView("t0999"), submittedAt: at(999) });
  });

  test("markStarted marks a task running on its worker and counts the attempt", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.markStarted(started("t1", { worker: "obrera", attempt: 2 }));
    assert.deepEqual(await store.get("t1"), {
      ...queuedView("t1"),
      status: "running",
      worker: "obrera",
      startedAt: at(1_000),
      attempts: 2,
    });
    // A late notice of an earlier attempt does not lower the count.
    await store.markStarted(started("t1", { worker: "w3", startedAt: at(2_000), attempt: 1 }));
    const view = await store.get("t1");
    assert.equal(view?.attempts, 2);
    assert.equal(view?.worker, "w3");
    assert.equal(view?.startedAt, at(2_000));
  });

  test("markStarted ignores an unknown task and a final one", async ({ store }) => {
    await store.markStarted(started("fantasma"));
    assert.equal(await store.get("fantasma"), undefined);
    await store.create(newTask("t1"));
    assert.equal(await store.complete(result("t1")), true);
    await store.markStarted(started("t1", { worker: "w2", startedAt: at(5_000), attempt: 3 }));
    const view = await store.get("t1");
    assert.equal(view?.status, "succeeded");
    assert.equal(view?.worker, "w1");
    assert.equal(view?.startedAt, at(1_000));
    assert.equal(view?.attempts, 1);
  });

  test("markRetrying puts a running task back to queued and keeps the error", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.markStarted(started("t1"));
    const error = { code: "TIMEOUT", message: "La tarea superó su tiempo máximo" } as const;
    await store.markRetrying("t1", error);
    const view = await store.get("t1");
    assert.equal(view?.status, "queued");
    assert.deepEqual(view?.error, error);
    assert.equal(view?.attempts, 1);
    // The retry that succeeds clears the error.
    await store.markStarted(started("t1", { attempt: 2, startedAt: at(3_000) }));
    assert.equal(
      await store.complete(
        result("t1", { attempt: 2, startedAt: at(3_000), finishedAt: at(3_010) }),
      ),
      true,
    );
    const done = await store.get("t1");
    assert.equal(done?.status, "succeeded");
    assert.equal(done?.error, undefined);
    assert.equal(done?.attempts, 2);
  });

  test("markRetrying ignores a final task and an unknown one", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.complete(result("t1"));
    await store.markRetrying("t1", { code: "TASK_FAILED", message: "falló" });
    assert.equal((await store.get("t1"))?.status, "succeeded");
    assert.equal((await store.get("t1"))?.error, undefined);
    await store.markRetrying("fantasma", { code: "TASK_FAILED", message: "falló" });
    assert.equal(await store.get("fantasma"), undefined);
  });

  test("complete records the end of a task and returns true", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.markStarted(started("t1"));
    assert.equal(await store.complete(result("t1")), true);
    assert.deepEqual(await store.get("t1"), {
      ...queuedView("t1"),
      status: "succeeded",
      worker: "w1",
      startedAt: at(1_000),
      finishedAt: at(1_012),
      durationMs: 12,
      attempts: 1,
      output: { words: 1, reversed: "aloh", upper: "HOLA" },
    });
  });

  test("complete records a failure with its wire error and no output", async ({ store }) => {
    await store.create(newTask("t1"));
    const error = { code: "TASK_FAILED", message: "La tarea falló durante su ejecución" } as const;
    const { output: _, ...failed } = result("t1", { status: "failed", error, attempt: 3 });
    assert.equal(await store.complete(failed), true);
    const view = await store.get("t1");
    assert.equal(view?.status, "failed");
    assert.deepEqual(view?.error, error);
    assert.equal(view?.attempts, 3);
    assert.equal(view !== undefined && "output" in view, false);
  });

  test("complete keeps a null output apart from none, and a fractional duration", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.complete(result("t1", { output: null, durationMs: 12.345 }));
    const view = await store.get("t1");
    assert.ok(view !== undefined && "output" in view);
    assert.equal(view.output, null);
    assert.equal(view.durationMs, 12.345);
  });

  test("a duplicate result is not delivered twice", async ({ store }) => {
    await store.create(newTask("t1"));
    assert.equal(
      await store.complete(result("t1", { worker: "w1", output: { first: true } })),
      true,
    );
    assert.equal(
      await store.complete(result("t1", { worker: "w2", output: { first: false } })),
      false,
    );
    assert.equal(await store.complete(result("t1", { status: "failed", worker: "w3" })), false);
    const view = await store.get("t1");
    assert.equal(view?.status, "succeeded");
    assert.equal(view?.worker, "w1");
    assert.deepEqual(view?.output, { first: true });
  });

  test("complete of an unknown task creates its record", async ({ store }) => {
    assert.equal(
      await store.complete(result("huerfana", { taskType: "echo", worker: "w9", attempt: 2 })),
      true,
    );
    assert.deepEqual(await store.get("huerfana"), {
      taskId: "huerfana",
      taskType: "echo",
      status: "succeeded",
      priority: 0,
      client: { name: "desconocido", kind: "cli" },
      submittedAt: at(1_000),
      startedAt: at(1_000),
      finishedAt: at(1_012),
      worker: "w9",
      durationMs: 12,
      attempts: 2,
      maxAttempts: 2,
      output: { words: 1, reversed: "aloh", upper: "HOLA" },
    });
    assert.equal(await store.complete(result("huerfana")), false);
  });

  test("cancel cancels a queued task only", async ({ store }) => {
    await store.create(newTask("q"));
    await store.create(newTask("r"));
    await store.create(newTask("s"));
    await store.markStarted(started("r"));
    await store.complete(result("s"));
    const before = Date.now();
    assert.equal(await store.cancel("q"), "cancelled");
    const after = Date.now();
    assert.equal(await store.cancel("q"), "too_late");
    assert.equal(await store.cancel("r"), "too_late");
    assert.equal(await store.cancel("s"), "too_late");
    assert.equal(await store.cancel("nadie"), "not_found");
    const view = await store.get("q");
    assert.equal(view?.status, "cancelled");
    const finishedAt = Date.parse(view?.finishedAt ?? "");
    assert.ok(
      finishedAt >= before - 1 && finishedAt <= after + 1,
      `finishedAt ${view?.finishedAt}`,
    );
    assert.equal((await store.get("r"))?.status, "running");
    assert.equal((await store.get("s"))?.status, "succeeded");
  });

  test("a cancelled task stays cancelled: its result is not delivered", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.cancel("t1");
    assert.equal(await store.complete(result("t1")), false);
    await store.markStarted(started("t1"));
    await store.markRetrying("t1", { code: "TASK_FAILED", message: "falló" });
    const view = await store.get("t1");
    assert.equal(view?.status, "cancelled");
    assert.equal(view?.worker, undefined);
    assert.equal(view?.error, undefined);
  });

  test("writes queued in one turn apply in the order they were made", async ({ store }) => {
    const [createdT1, , first, second, createdT2, cancelled, late] = await Promise.all([
      store.create(newTask("t1")),
      store.markStarted(started("t1")),
      store.complete(result("t1", { worker: "w1" })),
      store.complete(result("t1", { worker: "w2" })),
      store.create(newTask("t2")),
      store.cancel("t2"),
      store.complete(result("t2")),
    ]);
    assert.deepEqual(createdT1, { taskId: "t1", created: true });
    assert.equal(first, true);
    assert.equal(second, false);
    assert.deepEqual(createdT2, { taskId: "t2", created: true });
    assert.equal(cancelled, "cancelled");
    assert.equal(late, false);
    assert.equal((await store.get("t1"))?.worker, "w1");
    assert.equal((await store.get("t2"))?.status, "cancelled");
  });

  test("notices and results of one task queued in one turn end as if applied one by one", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.create(newTask("t2"));
    const error = { code: "TIMEOUT", message: "La tarea superó su tiempo máximo" } as const;
    const [, , , first, , late, , recordedT2] = await Promise.all([
      store.markStarted(started("t1")),
      store.markRetrying("t1", error),
      store.markStarted(started("t1", { worker: "w2", attempt: 2, startedAt: at(3_000) })),
      store.complete(result("t1", { worker: "w2", attempt: 2, startedAt: at(3_000) })),
      store.markRetrying("t1", error),
      store.complete(result("t1", { worker: "w3", attempt: 3 })),
      // A start of a later attempt than the result's, in the same turn, still counts.
      store.markStarted(started("t2", { attempt: 3 })),
      store.complete(result("t2", { attempt: 2 })),
    ]);
    assert.equal(first, true);
    assert.equal(late, false);
    assert.equal(recordedT2, true);
    const t1 = await store.get("t1");
    assert.equal(t1?.status, "succeeded");
    assert.equal(t1?.worker, "w2");
    assert.equal(t1?.attempts, 2);
    assert.equal(t1?.error, undefined);
    const t2 = await store.get("t2");
    assert.equal(t2?.status, "succeeded");
    assert.equal(t2?.attempts, 3);
  });

  test("a retry notice, then a start of the next attempt, in one turn leave the task running", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.markStarted(started("t1"));
    const error = { code: "TIMEOUT", message: "La tarea superó su tiempo máximo" } as const;
    await Promise.all([
      store.markRetrying("t1", error),
      store.markStarted(started("t1", { worker: "w2", attempt: 2, startedAt: at(3_000) })),
    ]);
    const view = await store.get("t1");
    assert.equal(view?.status, "running");
    assert.equal(view?.worker, "w2");
    assert.equal(view?.attempts, 2);
  });

  test("a result of an unknown task, then markPublished, in one turn mark the record it made", async ({ store }) => {
    await Promise.all([
      store.complete(result("huerfana")),
      store.markPublished("huerfana"),
      store.create(newTask("t1")),
      store.markPublished("t1"),
    ]);
    assert.equal(await store.published("huerfana"), true);
    assert.equal(await store.published("t1"), true);
  });

  test("remove forgets a task and frees its idempotency key", async ({ store }) => {
    await store.create(newTask("t1", { idempotencyKey: "clave" }));
    await store.create(newTask("t2"));
    await store.remove("t1");
    await store.remove("no-existe");
    assert.equal(await store.get("t1"), undefined);
    assert.ok(await store.get("t2"));
    assert.deepEqual(await store.create(newTask("t3", { idempotencyKey: "clave" })), {
      taskId: "t3",
      created: true,
    });
  });

  test("list pages through 120 records newest first, with filters and a cursor", async ({ store }) => {
    const kinds: ClientKind[] = ["web", "mobile", "cli"];
    const model: {
      taskId: string;
      submittedAt: number;
      taskType: string;
      kind: ClientKind;
      name: string;
      status: TaskStatus;
    }[] = [];
    for (let i = 0; i < 120; i++) {
      const task = {
        taskId: `t-${String(i).padStart(3, "0")}`,
        // Three tasks per millisecond of submit time, so that ties are ordered by task id.
        submittedAt: Math.floor(i / 3) * 1_000,
        taskType: i % 2 === 0 ? "text" : "echo",
        kind: kinds[i % 3] ?? "cli",
        name: `cliente-${i % 4}`,
        status: (i % 5 === 0 ? "succeeded" : "queued") as TaskStatus,
      };
      model.push(task);
    }
    // Created in shuffled order: the order of the list comes from the records, not from insertion.
    const shuffled = model.map((task, i) => ({ task, key: (i * 37) % 120 })).sort((a, b) =>
      a.key - b.key
    );
    await Promise.all(shuffled.map(({ task }) =>
      store.create(newTask(task.taskId, {
        submittedAt: at(task.submittedAt),
        taskType: task.taskType,
        client: { name: task.name, kind: task.kind },
      }))
    ));
    await Promise.all(
      model.filter((task) => task.status === "succeeded").map((task) =>
        store.complete(result(task.taskId, { taskType: task.taskType }))
      ),
    );
    const newestFirst = (a: (typeof model)[number], b: (typeof model)[number]) =>
      b.submittedAt - a.submittedAt || (a.taskId < b.taskId ? 1 : -1);

    async function all(
      filter: Omit<Parameters<TaskStore["list"]>[0], "limit" | "cursor">,
      limit: number,
    ): Promise<{ ids: string[]; pages: number[] }> {
      const ids: string[] = [];
      const pages: number[] = [];
      let cursor: string | null = null;
      do {
        const page: Awaited<ReturnType<TaskStore["list"]>> = await store.list({
          ...filter,
          limit,
          ...(cursor === null ? {} : { cursor }),
        });
        ids.push(...page.items.map((item) => item.taskId));
        pages.push(page.items.length);
        cursor = page.nextCursor;
        assert.ok(pages.length <= 200, "the cursor must move forward");
      } while (cursor !== null);
      return { ids, pages };
    }
    const expected = (keep: (task: (typeof model)[number]) => boolean) =>
      model.filter(keep).sort(newestFirst).map((task) => task.taskId);

    const everything = await all({}, 25);
    assert.deepEqual(everything.ids, expected(() => true));
    assert.deepEqual(everything.pages, [25, 25, 25, 25, 20]);
    // A last page that is exactly full still ends the list.
    assert.deepEqual((await all({}, 40)).pages, [40, 40, 40]);

    assert.deepEqual(
      (await all({ statuses: ["succeeded"] }, 7)).ids,
      expected((task) => task.status === "succeeded"),
    );
    assert.deepEqual(
      (await all({ statuses: ["queued", "running"] }, 500)).ids,
      expected((task) => task.status === "queued"),
    );
    assert.deepEqual((await all({ statuses: [] }, 10)).ids, []);
    assert.deepEqual(
      (await all({ taskType: "echo", clientKind: "mobile" }, 9)).ids,
      expected((task) => task.taskType === "echo" && task.kind === "mobile"),
    );
    assert.deepEqual(
      (await all({ clientName: "cliente-2" }, 11)).ids,
      expected((task) => task.name === "cliente-2"),
    );
    assert.deepEqual(
      (await all({ since: at(10_000), until: at(20_000) }, 4)).ids,
      expected((task) => task.submittedAt >= 10_000 && task.submittedAt < 20_000),
    );
    assert.deepEqual((await all({ clientName: "nadie" }, 5)).pages, [0]);

    const first = await store.list({ limit: 1 });
    assert.equal(first.items[0]?.taskId, "t-119");
    assert.deepEqual(first.items[0], {
      ...queuedView("t-119"),
      taskType: "echo",
      client: { name: "cliente-3", kind: "cli" },
      submittedAt: at(39_000),
      owner: "cliente-3",
    });
  });

  test("list refuses a page size outside 1 to 500 and a cursor it did not make", async ({ store }) => {
    await assert.rejects(store.list({ limit: 0 }), RangeError);
    await assert.rejects(store.list({ limit: 501 }), RangeError);
    await assert.rejects(store.list({ limit: 1.5 }), RangeError);
    await assert.rejects(
      store.list({ limit: 10, cursor: "esto-no-es-un-cursor" }),
      (err) => err instanceof ColmenaError && err.code === "INVALID_MESSAGE",
    );
  });

  test("list answers INVALID_MESSAGE to crafted cursors: a time out of range, a NUL, a lone surrogate, a huge id", async ({ store }) => {
    await store.create(newTask("t1"));
    const craft = (value: unknown) =>
      new TextEncoder().encode(JSON.stringify(value)).toBase64({
        alphabet: "base64url",
        omitPadding: true,
      });
    for (
      const position of [
        [9e15, "t1"],
        [-9e15, "t1"],
        [0, "a\u0000b"],
        [0, "\ud800"],
        [0, "x".repeat(10_000)],
      ]
    ) {
      await assert.rejects(
        store.list({ limit: 10, cursor: craft(position) }),
        (err) => err instanceof ColmenaError && err.code === "INVALID_MESSAGE",
        `cursor ${JSON.stringify(position).slice(0, 40)}`,
      );
    }
  });

  test("prune deletes final tasks finished before a time, oldest first, and returns their blob keys", async ({ store }) => {
    await store.create(newTask("a", { payloadRef: "payloads/a" }));
    await store.create(newTask("b", { payloadRef: "payloads/b" }));
    await store.create(newTask("c"));
    await store.create(newTask("d"));
    await store.create(newTask("e", { payloadRef: "payloads/e" }));
    await store.complete(result("a", { finishedAt: at(10_000) }));
    await store.complete(result("b", { status: "failed", finishedAt: at(20_000) }));
    await store.cancel("c");
    await store.markStarted(started("e"));
    assert.deepEqual(await store.prune(at(15_000), 100), {
      removed: 1,
      blobKeys: ["payloads/a"],
    });
    assert.equal(await store.get("a"), undefined);
    const farFuture = "2999-01-01T00:00:00.000Z";
    assert.deepEqual(await store.prune(farFuture, 1), { removed: 1, blobKeys: ["payloads/b"] });
    assert.deepEqual(await store.prune(farFuture, 100), { removed: 1, blobKeys: [] });
    assert.deepEqual(await store.prune(farFuture, 100), { removed: 0, blobKeys: [] });
    assert.equal((await store.get("d"))?.status, "queued");
    assert.equal((await store.get("e"))?.status, "running");
  });

  test("a closed store refuses calls with STORE_UNAVAILABLE", async ({ store }) => {
    await store.create(newTask("t1"));
    await store.close();
    await store.close();
    await assertStoreUnavailable(store.get("t1"));
    await assertStoreUnavailable(store.create(newTask("t2")));
    await assertStoreUnavailable(store.list({ limit: 10 }));
  });

  persistentTest("records survive a restart", async ({ store }, openAgain) => {
    await store.create(newTask("q", { idempotencyKey: "clave" }));
    await store.create(newTask("r"));
    await store.create(newTask("s"));
    await store.create(newTask("c"));
    await store.markStarted(started("r"));
    await store.complete(result("s", { output: { texto: "ñandú ✓" } }));
    await store.cancel("c");
    const before = await Promise.all(["q", "r", "s", "c"].map((id) => store.get(id)));
    await store.close();
    const reopened = await openAgain();
    assert.deepEqual(await Promise.all(["q", "r", "s", "c"].map((id) => reopened.get(id))), before);
    assert.deepEqual(await reopened.create(newTask("q2", { idempotencyKey: "clave" })), {
      taskId: "q",
      created: false,
    });
    assert.equal(await reopened.complete(result("s")), false);
  });

  persistentTest(
    "close applies the writes still queued before it closes",
    async ({ store }, openAgain) => {
      const pending = store.create(newTask("t1"));
      const closing = store.close();
      assert.deepEqual(await pending, { taskId: "t1", created: true });
      await closing;
      const reopened = await openAgain();
      assert.deepEqual(await reopened.get("t1"), queuedView("t1"));
    },
  );

  persistentTest(
    "two stores on the same data create one task for one idempotency key",
    async ({ store }, openAgain) => {
      const other = await openAgain();
      const outcomes = await Promise.all(
        Array.from(
          { length: 40 },
          (_, i) =>
            (i % 2 === 0 ? store : other).create(newTask(`t${i}`, { idempotencyKey: "misma" })),
        ),
      );
      assert.equal(
        outcomes.filter((outcome) => outcome.created).length,
        1,
      );
      assert.equal(new Set(outcomes.map((outcome) => outcome.taskId)).size, 1);
    },
  );

  persistentTest(
    "opening the same data again, even twice at once, leaves the schema as it was",
    async ({ store }, openAgain) => {
      await store.create(newTask("t1"));
      const [second, third] = await Promise.all([openAgain(), openAgain()]);
      assert.deepEqual(await second.get("t1"), queuedView("t1"));
      await third.create(newTask("t2"));
      assert.deepEqual(await store.get("t2"), queuedView("t2"));
    },
  );
}
