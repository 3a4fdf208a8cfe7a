/**
 * End to end, without a browser: the WebSocket bridge (`/ws`) speaks the same protocol as TCP, through the
 * same admission (error codes, line cap, connection cap) with client kind `web`; `/metrics` parses as
 * Prometheus text and counts the tasks run; `/eventos` streams snapshots and ends on drain; the operator
 * routes inspect a task and cancel a queued one.
 *
 * @module
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { TaskClient } from "../../client.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { needsRabbit } from "../_helpers/services.ts";

const rabbit = await needsRabbit();

/** A WebSocket to `/ws` whose messages are read in order, as parsed frames. */
async function openBridge(
  httpPort: number | undefined,
): Promise<
  {
    send(text: string): void;
    next(): Promise<Record<string, unknown>>;
    closed: Promise<void>;
  } & AsyncDisposable
> {
  assert.ok(httpPort !== undefined);
  const socket = new WebSocket(`ws://127.0.0.1:${httpPort}/ws`);
  const frames: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  const closed = Promise.withResolvers<void>();
  socket.onmessage = (event) => {
    frames.push(JSON.parse(event.data));
    wake?.();
  };
  socket.onclose = () => {
    closed.resolve();
    wake?.();
  };
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  return {
    send: (text) => socket.send(text),
    async next() {
      while (frames.length === 0) {
        await new Promise<void>((resolve) => wake = resolve);
        if (frames.length === 0 && socket.readyState === WebSocket.CLOSED) {
          throw new Error("The WebSocket closed before the next frame");
        }
      }
      return frames.shift()!;
    },
    closed: closed.promise,
    async [Symbol.asyncDispose]() {
      socket.close();
      await closed.promise;
    },
  };
}

Deno.test({
  name:
    "the WebSocket bridge answers with the same error codes as TCP and records its tasks as web",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("ws");
    await using server = await startServer(queues, [
      "--store",
      "memory",
      "--max-line-bytes",
      "2000",
    ]);
    await using _worker = await startWorker("abeja-ws", queues, ["--quiet"]);
    await using ws = await openBridge(server.httpPort);

    ws.send(JSON.stringify({ type: "hello", id: "h", client: { name: "navegador", kind: "cli" } }));
    const welcome = await ws.next();
    assert.equal(welcome.type, "welcome");
    assert.deepEqual(welcome.taskTypes, ["text", "numbers", "echo", "sleep", "hash"]);

    ws.send("esto no es json");
    let f = await ws.next();
    assert.deepEqual([f.type, f.id, f.code], ["error", null, "INVALID_JSON"]);
    ws.send(JSON.stringify({ type: "submit", id: "m" }));
    f = await ws.next();
    assert.deepEqual([f.id, f.code], ["m", "INVALID_MESSAGE"]);
    ws.send(JSON.stringify({ type: "submit", id: "u", task: { type: "nada", payload: {} } }));
    f = await ws.next();
    assert.deepEqual([f.id, f.code, f.message], [
      "u",
      "UNKNOWN_TASK_TYPE",
      'Tipo de tarea desconocido: "nada"',
    ]);
    ws.send(
      JSON.stringify({ type: "submit", id: "p", task: { type: "sleep", payload: { ms: "x" } } }),
    );
    f = await ws.next();
    assert.equal(f.code, "INVALID_PAYLOAD");
    assert.match(String(f.message), /^Datos no válidos para "sleep": /);

    // Over the line cap: FRAME_TOO_LARGE, and the connection goes on.
    ws.send(JSON.stringify({ type: "ping", id: "x".repeat(3000) }));
    f = await ws.next();
    assert.deepEqual([f.id, f.code], [null, "FRAME_TOO_LARGE"]);

    // A message with line breaks between its tokens is still one frame.
    ws.send(JSON.stringify(
      { type: "submit", id: "t", task: { type: "text", payload: { text: "uno\ndos tres" } } },
      null,
      2,
    ));
    const accepted = await ws.next();
    assert.deepEqual([accepted.type, accepted.id], ["accepted", "t"]);
    const result = await ws.next();
    assert.equal(result.type, "result");
    assert.equal((result.output as { words: number }).words, 3);

    // The hello said "cli"; over the bridge the task is recorded as web.
    ws.send(JSON.stringify({ type: "status", id: "s", taskId: accepted.taskId }));
    const status = await ws.next();
    assert.deepEqual(status.client, { name: "navegador", kind: "web" });
  },
});

Deno.test({
  name: "a WebSocket over the connection cap is dropped with OVERLOADED",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("wscap");
    await using server = await startServer(queues, ["--store", "memory", "--max-connections", "1"]);
    await using first = await openBridge(server.httpPort);
    first.send(JSON.stringify({ type: "ping", id: "1" }));
    assert.equal((await first.next()).type, "pong");
    await using second = await openBridge(server.httpPort);
    const goodbye = await second.next();
    assert.deepEqual([goodbye.type, goodbye.id, goodbye.code], ["error", null, "OVERLOADED"]);
    await second.closed;
  },
});

/** A metric family as parse-prometheus-text-format gives it (the package ships no types). */
interface MetricFamily {
  readonly name: string;
  readonly type: string;
  readonly metrics: readonly {
    readonly value?: string;
    readonly count?: string;
    readonly labels?: Record<string, string>;
  }[];
}

function value(
  families: readonly MetricFamily[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const family = families.find((f) => f.name === name);
  const metric = family?.metrics.find((m) =>
    Object.entries(labels).every(([k, v]) =>
      (m as { labels?: Record<string, string> }).labels?.[k] === v
    )
  );
  if (metric === undefined) return undefined;
  return Number(metric.value ?? metric.count);
}

Deno.test({
  name:
    "/metrics parses as Prometheus text and its counters match the tasks run over TCP and WebSocket",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("prom");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using _worker = await startWorker("abeja-prom", queues, ["--quiet"]);
    {
      await using client = new TaskClient({ host: "127.0.0.1", port: server.port, kind: "mobile" });
      for (let i = 0; i < 4; i++) await client.run("echo", { message: i });
      await client.run("text", { text: "hola mundo" });
    }
    {
      await using ws = await openBridge(server.httpPort);
      for (const id of ["a", "b"]) {
        ws.send(
          JSON.stringify({ type: "submit", id, task: { type: "text", payload: { text: id } } }),
        );
        assert.equal((await ws.next()).type, "accepted");
        assert.equal((await ws.next()).type, "result");
      }
    }
    const response = await fetch(`http://127.0.0.1:${server.httpPort}/metrics`);
    const text = await response.text();
    const families: MetricFamily[] = parsePrometheus(text);
    assert.equal(value(families, "colmena_results_succeeded_total", { type: "echo" }), 4);
    assert.equal(value(families, "colmena_results_succeeded_total", { type: "text" }), 3);
    assert.equal(value(families, "colmena_tasks_accepted_by_kind_total", { kind: "mobile" }), 5);
    assert.equal(value(families, "colmena_tasks_accepted_by_kind_total", { kind: "web" }), 2);
    // The parser reads the histogram family but folds its label sets together: counts from the text.
    assert.equal(
      families.find((f) => f.name === "colmena_task_latency_seconds")?.type,
      "HISTOGRAM",
    );
    assert.ok(text.includes('\ncolmena_task_latency_seconds_count{type="text"} 3\n'));
    assert.ok(text.includes('\ncolmena_task_latency_seconds_count{type="echo"} 4\n'));
    assert.equal(value(families, "colmena_broker_reconnects_total"), 0);
    assert.equal(value(families, "colmena_workers_alive"), 1);
    assert.equal(
      value(families, "colmena_queue_messages", { queue: `${queues.taskQueue}.dlq`, kind: "dlq" }),
      0,
    );
    assert.equal(
      value(families, "colmena_queue_messages", { kind: "task", type: "echo" }),
      0,
    );
    const types = families.map((f) => f.type);
    assert.ok(types.includes("HISTOGRAM") && types.includes("COUNTER") && types.includes("GAUGE"));
  },
});

/** Reads an SSE response until it ends; returns the events by name, in order. */
async function readEvents(
  response: Response,
  onEvent: (event: string, data: string) => void,
): Promise<void> {
  let buffer = "";
  for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event !== undefined) onEvent(event, data ?? "");
    }
  }
}

Deno.test({
  name:
    "/eventos streams snapshots with the queued task and its queue depth, and ends with fin on drain",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("sse");
    await using server = await startServer(queues, ["--store", "memory"]);
    {
      await using client = new TaskClient({ host: "127.0.0.1", port: server.port, name: "ana" });
      // No worker runs sleep yet: the task waits in its queue.
      const taskId = await client.submit("sleep", { ms: 10 });
      const response = await fetch(`http://127.0.0.1:${server.httpPort}/eventos`);
      assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
      const events: string[] = [];
      let sawQueued = false;
      const reading = readEvents(response, (event, data) => {
        events.push(event);
        if (event !== "snapshot") return;
        const snapshot = JSON.parse(data);
        const queue = snapshot.queues?.find((q: { queue: string }) =>
          q.queue === `${queues.taskQueue}.sleep`
        );
        const recent = snapshot.recent.find((t: { taskId: string }) => t.taskId === taskId);
        if (queue?.messages === 1 && recent?.status === "queued" && recent.client.name === "ana") {
          if (!sawQueued) server.kill("SIGTERM");
          sawQueued = true;
        }
      });
      await reading;
      assert.ok(sawQueued, "a snapshot showed the queued task and its queue depth");
      assert.equal(events.at(-1), "fin");
    }
    assert.equal((await server.status).code, 0);
  },
});

Deno.test({
  name: "operator routes inspect a task with its payload and cancel it while it is queued",
  ...rabbit,
  async fn() {
    await using queues = uniqueQueues("ops");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using client = new TaskClient({ host: "127.0.0.1", port: server.port });
    const taskId = await client.submit("sleep", { ms: 25 });
    const base = `http://127.0.0.1:${server.httpPort}/api/tareas`;
    const inspected = await (await fetch(`${base}/${taskId.slice(0, 8)}`)).json();
    assert.equal(inspected.task.taskId, taskId);
    assert.equal(inspected.task.status, "queued");
    assert.deepEqual(inspected.submission.payload, { ms: 25 });
    const cancelled = await fetch(`${base}/${taskId}/cancelar`, { method: "POST" });
    assert.deepEqual(await cancelled.json(), { taskId, cancelled: true, status: "cancelled" });
    const again = await (await fetch(`${base}/${taskId}/cancelar`, { method: "POST" })).json();
    assert.equal(again.cancelled, false);
    const requeue = await fetch(`${base}/${taskId}/reencolar`, { method: "POST" });
    assert.equal(requeue.status, 404);
    assert.match((await requeue.json()).message, /no está en la cola de fallidas/);
  },
});
