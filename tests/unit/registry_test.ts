/**
 * Unit tests of `worker/registry.ts`: the worker's registry of task handlers.
 *
 * @module
 */
import assert from "node:assert/strict";
import { echoTask, sleepTask, textTask } from "../../shared/tasks.ts";
import { type TaskContext, TaskRegistry } from "../../worker/registry.ts";

const context: TaskContext = {
  signal: new AbortController().signal,
  taskId: "t-1",
  attempt: 1,
  log: { info: () => {}, warn: () => {}, error: () => {} },
};

Deno.test("TaskRegistry starts empty", () => {
  const registry = new TaskRegistry();
  assert.deepEqual(registry.names(), []);
  assert.equal(registry.get("echo"), undefined);
});

Deno.test("TaskRegistry.get returns the registered definition and handler", async () => {
  const registry = new TaskRegistry().register(echoTask, ({ message }) => ({ message }));
  const registration = registry.get("echo");
  assert.ok(registration);
  assert.equal(registration.definition, echoTask);
  assert.deepEqual(await registration.handler({ message: [1, "a"] }, context), {
    message: [1, "a"],
  });
});

Deno.test("TaskRegistry passes the context to the handler", async () => {
  let seen: TaskContext | undefined;
  const registry = new TaskRegistry().register(sleepTask, (_payload, ctx) => {
    seen = ctx;
    return { sleptMs: 0 };
  });
  await registry.get("sleep")?.handler({ ms: 0 }, context);
  assert.equal(seen, context);
});

Deno.test("TaskRegistry.register returns the registry, so calls chain", () => {
  const registry = new TaskRegistry();
  const chained = registry
    .register(textTask, () => ({ words: 0, reversed: "", upper: "" }))
    .register(echoTask, ({ message }) => ({ message }));
  assert.equal(chained, registry);
});

Deno.test("TaskRegistry.names lists the task types in registration order", () => {
  const registry = new TaskRegistry()
    .register(textTask, () => ({ words: 0, reversed: "", upper: "" }))
    .register(echoTask, ({ message }) => ({ message }))
    .register(sleepTask, () => ({ sleptMs: 0 }));
  assert.deepEqual(registry.names(), ["text", "echo", "sleep"]);
});

Deno.test("TaskRegistry.get returns undefined for unregistered and inherited names", () => {
  const registry = new TaskRegistry().register(echoTask, ({ message }) => ({ message }));
  for (const name of ["text", "toString", "__proto__", ""]) {
    assert.equal(registry.get(name), undefined, name);
  }
});

Deno.test("TaskRegistry throws TypeError when a task type is registered twice", () => {
  const registry = new TaskRegistry().register(echoTask, ({ message }) => ({ message }));
  const first = registry.get("echo")?.handler;
  assert.throws(
    () => registry.register(echoTask, () => ({ message: "otro" })),
    (err: unknown) => {
      assert.ok(err instanceof TypeError);
      assert.match(err.message, /"echo"/);
      return true;
    },
  );
  assert.deepEqual(registry.names(), ["echo"]);
  assert.ok(first);
  assert.equal(registry.get("echo")?.handler, first);
});

Deno.test("TaskRegistry instances do not share registrations", () => {
  const a = new TaskRegistry().register(echoTask, ({ message }) => ({ message }));
  const b = new TaskRegistry().register(echoTask, ({ message }) => ({ message }));
  assert.notEqual(a.get("echo"), b.get("echo"));
  assert.deepEqual(b.names(), ["echo"]);
});
