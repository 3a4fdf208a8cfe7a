/**
 * Unit tests of the client's pending requests: ids, replies matched by id, wire errors, and closing.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import { PendingRequests } from "../../client/requests.ts";

function collecting(sent: string[]): PendingRequests {
  return new PendingRequests({ timeoutMs: 60_000, send: (line) => sent.push(line) });
}

Deno.test("PendingRequests sends each request as a line and settles it with the reply of its id", async () => {
  const sent: string[] = [];
  const requests = collecting(sent);
  const first = requests.request({ type: "ping", id: requests.nextId() });
  const second = requests.request({ type: "ping", id: requests.nextId() });
  assert.deepEqual(sent, ['{"type":"ping","id":"1"}\n', '{"type":"ping","id":"2"}\n']);
  requests.settle({ type: "pong", id: "2" });
  requests.settle({ type: "pong", id: "9" });
  assert.deepEqual(await second, { type: "pong", id: "2" });
  assert.deepEqual(requests.unanswered(), ['{"type":"ping","id":"1"}\n']);
  requests.settle({ type: "error", id: "1", code: "NOT_FOUND", message: "No existe" });
  await assert.rejects(
    () => first,
    (err) => err instanceof ColmenaError && err.code === "NOT_FOUND" && err.message === "No existe",
  );
});

Deno.test("PendingRequests refuses a line too large for the server to match, without sending it", async () => {
  const sent: string[] = [];
  const requests = collecting(sent);
  await assert.rejects(
    () =>
      requests.request({
        type: "submit",
        id: requests.nextId(),
        task: { type: "echo", payload: { message: "x".repeat(2 * 1024 * 1024) } },
      }),
    (err) => err instanceof ColmenaError && err.code === "FRAME_TOO_LARGE",
  );
  assert.deepEqual(sent, []);
});

Deno.test("PendingRequests rejects what waits, and what comes later, with the close reason", async () => {
  const requests = collecting([]);
  requests.startTimeouts();
  const waiting = requests.request({ type: "ping", id: requests.nextId() });
  requests.close(new ColmenaError("SHUTTING_DOWN"));
  await assert.rejects(
    () => waiting,
    (err) => err instanceof ColmenaError && err.code === "SHUTTING_DOWN",
  );
  await assert.rejects(
    () => requests.request({ type: "ping", id: requests.nextId() }),
    (err) => err instanceof ColmenaError && err.code === "CONNECTION_CLOSED",
  );
});
