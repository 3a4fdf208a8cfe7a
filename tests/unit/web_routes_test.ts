/**
 * Unit: the web routes of `server/web_routes.ts` through `handleHttp`, with a plain object in place of the
 * server: operator routes answer 401 when `authorizeAdmin` refuses, actions from another origin 403, the
 * pages carry a Content-Security-Policy without inline scripts, and the server id is escaped.
 *
 * @module
 */
import assert from "node:assert/strict";
import { handleHttp, type HttpTarget } from "../../server/http.ts";
import type { WebTarget } from "../../server/web_routes.ts";
import { escapeHtml } from "../../server/web_pages.ts";

const TASK_ID = "0123abcd-0000-4000-8000-000000000000";

function target(admin: boolean, calls: string[] = []): HttpTarget {
  const web: WebTarget = {
    serverId: '<b>"srv"</b>',
    authorizeAdmin: (request) => {
      calls.push(`auth ${request.headers.get("authorization") ?? "-"}`);
      return Promise.resolve(admin);
    },
    events: () => new Response("events"),
    taskTypes: () => [],
    inspect: (id) => {
      calls.push(`inspect ${id}`);
      return Promise.resolve(undefined);
    },
    requeue: (id) => {
      calls.push(`requeue ${id}`);
      return Promise.resolve([id]);
    },
    cancel: (id) => {
      calls.push(`cancel ${id}`);
      return Promise.resolve({ taskId: id, cancelled: true, status: "cancelled" as const });
    },
    webSocket: () => new Response("ws"),
  };
  return {
    draining: () => false,
    readiness: () => Promise.resolve({ broker: true, almacen: true }),
    metrics: () => "",
    web,
  };
}

async function call(t: HttpTarget, path: string, init: RequestInit = {}) {
  const response = await handleHttp(new Request(`http://127.0.0.1:8080${path}`, init), t);
  return { status: response.status, body: await response.text(), headers: response.headers };
}

Deno.test("operator routes answer 401 with a Spanish message when authorizeAdmin refuses", async () => {
  const calls: string[] = [];
  const t = target(false, calls);
  for (
    const [path, method] of [
      ["/eventos", "GET"],
      [`/api/tareas/${TASK_ID}`, "GET"],
      [`/api/tareas/${TASK_ID}/reencolar`, "POST"],
      [`/api/tareas/${TASK_ID}/cancelar`, "POST"],
    ] as const
  ) {
    const r = await call(t, path, { method, headers: { authorization: "Bearer malo" } });
    assert.equal(r.status, 401, path);
    assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="colmena"');
    assert.match(JSON.parse(r.body).message, /token de administrador/);
  }
  assert.deepEqual(calls, Array(4).fill("auth Bearer malo"));
});

Deno.test("an admin reaches requeue and cancel; a 404 names the task", async () => {
  const calls: string[] = [];
  const t = target(true, calls);
  const requeue = await call(t, `/api/tareas/${TASK_ID}/reencolar`, { method: "POST" });
  assert.deepEqual(JSON.parse(requeue.body), { reencoladas: [TASK_ID] });
  const cancel = await call(t, `/api/tareas/${TASK_ID}/cancelar`, { method: "POST" });
  assert.equal(JSON.parse(cancel.body).cancelled, true);
  const missing = await call(t, `/api/tareas/${TASK_ID}`);
  assert.equal(missing.status, 404);
  assert.equal(JSON.parse(missing.body).message, `No existe ninguna tarea con id "${TASK_ID}"`);
  assert.deepEqual(calls.filter((c) => !c.startsWith("auth")), [
    `requeue ${TASK_ID}`,
    `cancel ${TASK_ID}`,
    `inspect ${TASK_ID}`,
  ]);
  assert.equal((await call(t, `/api/tareas/${TASK_ID}/cancelar`)).status, 405);
  assert.equal((await call(t, "/api/tareas/<script>")).status, 404);
});

Deno.test("actions and WebSockets from another origin answer 403 before anything runs", async () => {
  const calls: string[] = [];
  const t = target(true, calls);
  const post = await call(t, `/api/tareas/${TASK_ID}/cancelar`, {
    method: "POST",
    headers: { origin: "http://evil.example" },
  });
  assert.equal(post.status, 403);
  const ws = await call(t, "/ws", {
    headers: { upgrade: "websocket", origin: "http://evil.example" },
  });
  assert.equal(ws.status, 403);
  assert.deepEqual(calls, []);
  const same = await call(t, `/api/tareas/${TASK_ID}/cancelar`, {
    method: "POST",
    headers: { origin: "http://127.0.0.1:8080" },
  });
  assert.equal(same.status, 200);
  assert.equal((await call(t, "/ws")).status, 426);
});

Deno.test("pages forbid inline scripts and escape the server id", async () => {
  const t = target(true);
  for (const path of ["/", "/cliente"]) {
    const page = await call(t, path);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self';/);
    assert.ok(page.body.includes("&lt;b&gt;&quot;srv&quot;&lt;/b&gt;"));
    assert.ok(!page.body.includes('<b>"srv"</b>'));
    assert.ok(!/<script>/.test(page.body), "no inline script");
  }
  assert.equal(escapeHtml(`<a href='x'>&</a>`), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
  const js = await call(t, "/web/panel.js");
  assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.ok(!js.body.includes("innerHTML"), "the dashboard script never parses HTML");
  assert.equal((await call(t, "/web/../../deno.json")).status, 404);
});
