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

Deno.test("PendingRequests sends a request refused with RATE_LIMITED or OVERLOADED again, after a pause, until it is served", async () => {
  const sent: string[] = [];
  const requests = collecting(sent);
  const reply = requests.request({ type: "ping", id: requests.nextId() });
  requests.settle({ type: "error", id: "1", code: "RATE_LIMITED", message: "Más de 5 peticiones" });
  assert.equal(sent.length, 1, "not at once");
  while (sent.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(sent[1], sent[0], "the same line again");
  requests.settle({ type: "error", id: "1", code: "OVERLOADED", message: "Demasiadas" });
  while (sent.length < 3) await new Promise((resolve) => setTimeout(resolve, 5));
  requests.settle({ type: "pong", id: "1" });
  assert.deepEqual(await reply, { type: "pong", id: "1" });
});

Deno.test("PendingRequests answers a refusal that a new try would not fit before the request's timeout", async () => {
  const sent: string[] = [];
  const requests = new PendingRequests({ timeoutMs: 5, send: (line) => sent.push(line) });
  const reply = requests.request({ type: "ping", id: requests.nextId() });
  await new Promise((resolve) => setTimeout(resolve, 6));
  requests.settle({ type: "error", id: "1", code: "RATE_LIMITED", message: "Más de 5 peticiones" });
  await assert.rejects(
    () => reply,
    (err) => err instanceof ColmenaError && err.code === "RATE_LIMITED",
  );
  assert.equal(sent.length, 1);
});

Deno.test("PendingRequests does not send a refused request twice when a reconnect resends it during its pause", async () => {
  const sent: string[] = [];
  const requests = collecting(sent);
  const reply = requests.request({ type: "ping", id: requests.nextId() });
  requests.settle({ type: "error", id: "1", code: "RATE_LIMITED", message: "Más de 5 peticiones" });
  assert.deepEqual(requests.unanswered(), [sent[0]], "resent by the reconnect");
  await new Promise((resolve) => setTimeout(resolve, 100)); // past any pause
  assert.equal(sent.length, 1, "the pause's own resend was called off");
  requests.settle({ type: "pong", id: "1" });
  assert.deepEqual(await reply, { type: "pong", id: "1" });
});
