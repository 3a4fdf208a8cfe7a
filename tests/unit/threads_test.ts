/**
 * Unit tests of `worker/threads.ts`: the pool of threads for handlers that must not block the worker.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import { echoTask, hashTask } from "../../shared/tasks.ts";
import { type TaskContext, TaskRegistry } from "../../worker/registry.ts";
import { ThreadPool } from "../../worker/threads.ts";

const HANDLERS = new URL("../_helpers/thread_handlers.ts", import.meta.url).href;

/** Settles with "colgado" if `promise` has not settled within `ms`, so that a bug fails instead of hanging. */
function orHang<T>(promise: Promise<T>, ms = 20_000): Promise<T | "colgado"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<"colgado">((resolve) => timer = setTimeout(() => resolve("colgado"), ms)),
  ]).finally(() => clearTimeout(timer));
}

Deno.test("ThreadPool runs the named export of a module in another thread", async () => {
  await using pool = new ThreadPool({ maxThreads: 2 });
  assert.deepEqual(await pool.run({ module: HANDLERS, export: "double", payload: 21 }), {
    doubled: 42,
    mainThread: false,
  });
  assert.ok(pool.threads >= 1 && pool.threads <= 2);
});

Deno.test("ThreadPool starts no thread before its first call", async () => {
  await using pool = new ThreadPool({ maxThreads: 2 });
  assert.equal(pool.threads, 0);
  assert.equal(pool.maxThreads, 2);
});

Deno.test("ThreadPool leaves the caller's event loop free while a handler never yields", async () => {
  await using pool = new ThreadPool({ maxThreads: 1 });
  const controller = new AbortController();
  const spinning = pool.run({ module: HANDLERS, export: "spin", payload: null }, controller.signal)
    .catch((err) => err);
  // On the caller's own thread this timer could never fire.
  const first = await Promise.race([
    spinning.then(() => "spin"),
    new Promise((resolve) => setTimeout(() => resolve("timer"), 50)),
  ]);
  assert.equal(first, "timer");
  controller.abort(new Error("fin"));
  assert.equal(((await spinning) as Error).message, "fin");
});

Deno.test("ThreadPool rejects an aborted call with the signal's reason and replaces its thread", async () => {
  await using pool = new ThreadPool({ maxThreads: 1 });
  const controller = new AbortController();
  const reason = new ColmenaError("TIMEOUT");
  const spinning = pool.run({ module: HANDLERS, export: "spin", payload: null }, controller.signal);
  // Queued behind the spinning call on the only thread: it runs only if that thread is terminated.
  const queued = pool.run({ module: HANDLERS, export: "double", payload: 1 });
  setTimeout(() => controller.abort(reason), 100);
  await assert.rejects(spinning, (err: unknown) => err === reason);
  assert.deepEqual(await orHang(queued), { doubled: 2, mainThread: false });
});

Deno.test("ThreadPool rejects at once a call whose signal has already aborted", async () => {
  await using pool = new ThreadPool({ maxThreads: 1 });
  const reason = new Error("ya no");
  await assert.rejects(
    pool.run({ module: HANDLERS, export: "double", payload: 1 }, AbortSignal.abort(reason)),
    (err) => err === reason,
  );
  assert.equal(pool.threads, 0);
});

Deno.test("ThreadPool keeps the code of a typed error thrown in a thread", async () => {
  await using pool = new ThreadPool({ maxThreads: 1 });
  await assert.rejects(
    pool.run({ module: HANDLERS, export: "refuse", payload: null }),
    (err: unknown) => {
      assert.ok(err instanceof ColmenaError);
      assert.equal(err.code, "INVALID_PAYLOAD");
      assert.equal(err.message, "No me gusta este número");
      return true;
    },
  );
});

Deno.test("ThreadPool rejects with an untyped error a handler throws, and keeps working", async () => {
  await using pool = new ThreadPool({ maxThreads: 1 });
  await assert.rejects(
    pool.run({ module: HANDLERS, export: "crash", payload: null }),
    (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, /boom/);
      return true;
    },
  );
  assert.deepEqual(await pool.run({ module: HANDLERS, export: "double", payload: 3 }), {
    doubled: 6,
    mainThread: false,
  });
});

Deno.test("ThreadPool fails the call whose handler throws outside it, instead of ending the process", async () => {
  await using pool = new ThreadPool({ maxThreads: 1 });
  await assert.rejects(
    orHang(pool.run({ module: HANDLERS, export: "escape", payload: null })),
    /se escapó/,
  );
  assert.deepEqual(await pool.run({ module: HANDLERS, export: "double", payload: 5 }), {
    doubled: 10,
    mainThread: false,
  });
});

Deno.test("ThreadPool rejects a call to an export that is not a function", async () => {
  await using pool = new ThreadPool({ maxThreads: 1 });
  await assert.rejects(
    pool.run({ module: HANDLERS, export: "notAFunction", payload: null }),
    /notAFunction/,
  );
});

Deno.test("ThreadPool refuses calls with SHUTTING_DOWN once closed", async () => {
  const pool = new ThreadPool({ maxThreads: 1 });
  assert.deepEqual(await pool.run({ module: HANDLERS, export: "double", payload: 2 }), {
    doubled: 4,
    mainThread: false,
  });
  await pool.close();
  assert.equal(pool.threads, 0);
  await assert.rejects(
    pool.run({ module: HANDLERS, export: "double", payload: 2 }),
    (err: unknown) => {
      assert.ok(err instanceof ColmenaError);
      assert.equal(err.code, "SHUTTING_DOWN");
      return true;
    },
  );
});

Deno.test("TaskRegistry.registerIsolated runs the handler in a thread unless inlineWhen says otherwise", async () => {
  await using registry = new TaskRegistry({ threads: { maxThreads: 1 } }).registerIsolated(
    echoTask,
    {
      module: new URL("../_helpers/thread_echo.ts", import.meta.url),
      export: "echo",
      inlineWhen: ({ message }) => message === "aquí",
    },
  );
  const context: TaskContext = {
    signal: new AbortController().signal,
    taskId: "t-1",
    attempt: 1,
    log: { info: () => {}, warn: () => {}, error: () => {} },
  };
  const registration = registry.get("echo");
  assert.ok(registration?.isolated);
  assert.equal(registration.definition, echoTask);
  assert.deepEqual(await registration.handler({ message: "allí" }, context), {
    message: "allí",
    mainThread: false,
  });
  assert.deepEqual(await registration.handler({ message: "aquí" }, context), {
    message: "aquí",
    mainThread: true,
  });
});

Deno.test("TaskRegistry.register marks its handlers as not isolated", async () => {
  await using registry = new TaskRegistry().register(hashTask, () => ({ sha256: "0".repeat(64) }));
  assert.equal(registry.get("hash")?.isolated, false);
});
