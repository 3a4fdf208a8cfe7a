/**
 * The pages of the HTTP listener: the dashboard and the browser client, rendered on the server as a shell
 * that their script fills, and the static files under `server/web/` (read once, then kept; `deno compile`
 * embeds them with `--include server/web`).
 *
 * The pages run no inline script (their Content-Security-Policy forbids it) and put nothing untrusted into
 * HTML: the server id is escaped here, and the scripts write data with `textContent` only.
 *
 * @module
 */

/** The static files served under `/web/`, with their content types. */
const ASSETS: Readonly<Record<string, string>> = {
  "panel.js": "text/javascript; charset=utf-8",
  "cliente.js": "text/javascript; charset=utf-8",
  "comun.js": "text/javascript; charset=utf-8",
  "estilo.css": "text/css; charset=utf-8",
};

const cache = new Map<string, Promise<string>>();

/** Headers of every page: no inline script or style, no framing, no sniffing. */
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** Text escaped for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#39;");
}

function _page(title: string, serverId: string, script: string, body: string): Response {
  const html = `<!doctype html>
<html lang="es">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · colmena</title>
<link rel="stylesheet" href="/web/estilo.css">
<script type="module" src="/web/${script}"></script>
</head>
<body>
<header>
  <h1>colmena · ${escapeHtml(title)}</h1>
  <nav><a href="/">Panel</a> <a href="/cliente">Cliente web</a> <a href="/metrics">Métricas</a></nav>
  <p>Servidor <code id="servidor">${
    escapeHtml(serverId)
  }</code> · <span id="estado">conectando…</span></p>
</header>
${body}
<dialog id="dialogo-token">
  <form method="dialog" id="form-token">
    <p id="texto-token">Esta acción necesita un token de administrador.</p>
    <label>Token <input type="password" id="token" autocomplete="off" required></label>
    <menu><button value="cancelar" formnovalidate>Cancelar</button> <button value="ok">Usar</button></menu>
  </form>
</dialog>
</body>
</html>
`;
  return new Response(html, { headers: PAGE_HEADERS });
}

/** The dashboard page (`/`). */
export function dashboardPage(serverId: string): Response {
  return _page(
    "panel",
    serverId,
    "panel.js",
    `<main class="panel">
<section><h2>Workers vivos <span id="num-workers" class="num">0</span></h2>
<table id="workers"><thead><tr><th>Nombre</th><th>Host</th><th>Tipos</th><th>En curso</th><th>Hechas</th><th>Fallidas</th><th>Último latido</th></tr></thead><tbody></tbody></table></section>
<section><h2>Colas</h2>
<table id="colas"><thead><tr><th>Cola</th><th>Clase</th><th>Tipo</th><th>Mensajes</th><th>Consumidores</th></tr></thead><tbody></tbody></table></section>
<section class="graficas"><h2>Últimos minutos</h2>
<figure><figcaption>Tareas terminadas por segundo <span id="tps" class="num">0</span></figcaption><svg id="grafica-tps" viewBox="0 0 300 80" preserveAspectRatio="none" role="img" aria-label="Tareas por segundo"></svg></figure>
<figure><figcaption>Latencia media (ms) <span id="latencia" class="num">–</span></figcaption><svg id="grafica-latencia" viewBox="0 0 300 80" preserveAspectRatio="none" role="img" aria-label="Latencia"></svg></figure></section>
<section><h2>Por tipo de tarea</h2>
<table id="por-tipo"><thead><tr><th>Tipo</th><th>Enviadas</th><th>Aceptadas</th><th>Correctas</th><th>Fallidas</th><th>Canceladas</th></tr></thead><tbody></tbody></table></section>
<section><h2>Por clase de cliente</h2>
<table id="por-clase"><thead><tr><th>Clase</th><th>Tareas aceptadas</th><th>Conectados</th></tr></thead><tbody></tbody></table></section>
<section class="ancha"><h2>Tareas recientes</h2>
<table id="recientes"><thead><tr><th>Id</th><th>Tipo</th><th>Estado</th><th>Cliente</th><th>Worker</th><th>Duración</th></tr></thead><tbody></tbody></table></section>
<section class="ancha"><h2>Fallos</h2>
<table id="fallos"><thead><tr><th>Id</th><th>Tipo</th><th>Cliente</th><th>Error</th><th></th></tr></thead><tbody></tbody></table></section>
<section class="ancha"><h2>Inspeccionar una tarea</h2>
<form id="form-inspeccion"><label>Id o prefijo <input id="id-tarea" required minlength="8" maxlength="128" pattern="[0-9a-f\\-]+"></label>
<button id="ver">Ver</button> <button type="button" id="reencolar">Reencolar</button> <button type="button" id="cancelar">Cancelar</button></form>
<p id="aviso" role="status"></p>
<pre id="detalle"></pre></section>
</main>`,
  );
}

/** The browser client page (`/cliente`). */
export function clientPage(serverId: string): Response {
  return _page(
    "cliente web",
    serverId,
    "cliente.js",
    `<main class="cliente">
<section><h2>Nueva tarea</h2>
<label>Tipo de tarea <select id="tipo"></select></label>
<p id="descripcion"></p>
<form id="formulario"><div id="campos"></div><button id="enviar">Enviar</button></form>
<p id="error" role="alert"></p></section>
<section><h2>Resultados</h2>
<ol id="resultados"></ol></section>
</main>`,
  );
}

/** A static file of `server/web/`, or 404 for a name not listed. */
export async function webAsset(name: string): Promise<Response> {
  const type = ASSETS[name];
  if (type === undefined) {
    return new Response(
      JSON.stringify({ error: "no_encontrado", message: "No existe ese fichero" }),
      {
        status: 404,
        headers: { "content-type": "application/json; charset=utf-8" },
      },
    );
  }
  let text = cache.get(name);
  if (text === undefined) {
    text = Deno.readTextFile(new URL(`./web/${name}`, import.meta.url));
    cache.set(name, text);
    text.catch(() => cache.delete(name));
  }
  return new Response(await text, {
    headers: {
      "content-type": type,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    },
  });
}
