/**
 * The HTTP routes for people: the dashboard (`/`), the browser client (`/cliente`), their static files
 * (`/web/…`), the dashboard's event stream (`/eventos`), the task types (`/api/tipos`), task inspection and
 * operator actions (`/api/tareas/<id>`, `…/reencolar`, `…/cancelar`) and the WebSocket bridge (`/ws`).
 *
 * Operator routes (`/eventos`, `/api/tareas/…`) ask {@linkcode WebTarget.authorizeAdmin} and answer 401
 * without an admin token. Requests that act (POST) or open a WebSocket from another origin answer 403, so a
 * page on another site cannot drive a dashboard on loopback through its visitor's browser.
 *
 * @module
 */
import { ColmenaError } from "../shared/errors.ts";
import type { TaskTypeDescription } from "../shared/task_description.ts";
import type { NewTask } from "../shared/ports.ts";
import type { TaskView } from "../shared/protocol.ts";
import type { CancelResult } from "./task_queries.ts";
import { clientPage, dashboardPage, webAsset } from "./web_pages.ts";

/** A task as inspected from the dashboard: its record and, when kept, what it was submitted with. */
export interface TaskInspection {
  readonly task: TaskView;
  /** The payload as submitted (or the key of the object holding it); absent when not kept. */
  readonly submission?: Pick<NewTask, "payload" | "payloadRef" | "timeoutMs" | "origin">;
}

/** What the web routes need from the server. */
export interface WebTarget {
  /** This server's id, shown on the pages. */
  readonly serverId: string;
  /**
   * Whether the request may use operator routes: `Authorization: Bearer <token>` of an admin. Allows every
   * request while no tokens are configured (loopback, zero set-up).
   */
  authorizeAdmin(request: Request): Promise<boolean>;
  /** The dashboard's `text/event-stream`. */
  events(): Response;
  /** The task types loaded (built-in and from `--tareas`), with their JSON Schema. */
  taskTypes(): readonly TaskTypeDescription[];
  /** A task by id or unique prefix, or `undefined`. */
  inspect(idOrPrefix: string): Promise<TaskInspection | undefined>;
  /** Requeues a dead-lettered task; returns the ids moved (none when it is not in the dead-letter queue). */
  requeue(taskId: string): Promise<string[]>;
  /** Cancels a queued task by id or unique prefix; `undefined` when there is no such task. */
  cancel(idOrPrefix: string): Promise<CancelResult | undefined>;
  /** Upgrades the request to a WebSocket served as a client connection of kind `web`. */
  webSocket(request: Request, remoteAddr: Deno.Addr): Response;
}

function _json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

function _unauthorized(): Response {
  return _json(401, {
    error: "no_autorizado",
    message: "Hace falta un token de administrador (Authorization: Bearer <token>)",
  }, { "www-authenticate": 'Bearer realm="colmena"' });
}

/** Whether a request that acts comes from a page of this same server (or from no page at all). */
function _sameOrigin(request: Request): boolean {
  const origin = request.headers.get("origin");
  if (origin === null) return true; // not sent by a browser page: curl, scripts, tests
  try {
    return new URL(origin).host === new URL(request.url).host;
  } catch {
    return false;
  }
}

function _forbiddenOrigin(): Response {
  return _json(403, {
    error: "origen_no_permitido",
    message: "Esta acción solo se admite desde una página de este mismo servidor",
  });
}

function _fromError(err: unknown): Response {
  if (err instanceof ColmenaError && err.code === "BROKER_UNAVAILABLE") {
    return _json(503, { error: err.code, message: err.message });
  }
  throw err;
}

const TASK_ROUTE = /^\/api\/tareas\/([0-9a-f-]{8,128})(?:\/(reencolar|cancelar))?$/;

/**
 * Answers a request for one of the web routes, or `undefined` when the path is not one of them.
 */
export async function handleWeb(
  request: Request,
  target: WebTarget,
  info?: Deno.ServeHandlerInfo<Deno.NetAddr>,
): Promise<Response | undefined> {
  const path = new URL(request.url).pathname;
  const method = request.method;
  const get = method === "GET" || method === "HEAD";
  if (path === "/" || path === "/cliente" || path.startsWith("/web/") || path === "/api/tipos") {
    if (!get) return _methodNotAllowed(path, "GET");
    if (path === "/") return dashboardPage(target.serverId);
    if (path === "/cliente") return clientPage(target.serverId);
    if (path === "/api/tipos") return _json(200, { tipos: target.taskTypes() });
    return await webAsset(path.slice("/web/".length));
  }
  if (path === "/ws") {
    if (!get) return _methodNotAllowed(path, "GET");
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return _json(426, {
        error: "se_requiere_websocket",
        message: "La ruta /ws solo admite WebSocket",
      }, { upgrade: "websocket" });
    }
    if (!_sameOrigin(request)) return _forbiddenOrigin();
    const remoteAddr: Deno.Addr = info?.remoteAddr ??
      { transport: "tcp", hostname: "desconocido", port: 0 };
    return target.webSocket(request, remoteAddr);
  }
  if (path === "/eventos") {
    if (!get) return _methodNotAllowed(path, "GET");
    if (!await target.authorizeAdmin(request)) return _unauthorized();
    return target.events();
  }
  const match = TASK_ROUTE.exec(path);
  if (match === null) {
    return path.startsWith("/api/tareas/")
      ? _json(404, { error: "no_encontrado", message: "Id de tarea no válido" })
      : undefined;
  }
  const [, taskId, action] = match as unknown as [string, string, string | undefined];
  const wanted = action === undefined ? "GET" : "POST";
  if (method !== wanted) return _methodNotAllowed(path, wanted);
  if (action !== undefined && !_sameOrigin(request)) return _forbiddenOrigin();
  if (!await target.authorizeAdmin(request)) return _unauthorized();
  try {
    if (action === undefined) {
      const found = await target.inspect(taskId);
      return found === undefined ? _taskNotFound(taskId) : _json(200, found);
    }
    if (action === "reencolar") {
      const requeued = await target.requeue(taskId);
      return requeued.length === 0
        ? _json(404, {
          error: "no_encontrado",
          message: `La tarea ${taskId} no está en la cola de fallidas`,
        })
        : _json(200, { reencoladas: requeued });
    }
    const result = await target.cancel(taskId);
    return result === undefined ? _taskNotFound(taskId) : _json(200, result);
  } catch (err) {
    return _fromError(err);
  }
}

function _taskNotFound(taskId: string): Response {
  return _json(404, {
    error: "no_encontrado",
    message: `No existe ninguna tarea con id "${taskId}"`,
  });
}

function _methodNotAllowed(path: string, allowed: string): Response {
  return _json(405, {
    error: "metodo_no_permitido",
    message: `La ruta ${path} solo admite ${allowed}`,
  }, { allow: allowed });
}
