// Shared by the dashboard and the browser client: DOM helpers that only ever write text, and the admin
// token (kept in sessionStorage) that operator routes ask for.

const TOKEN_KEY = "colmena.token";

/** An element with text content and attributes; never parses HTML. */
export function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, String(v));
  return node;
}

/** A table row of text cells. */
export function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    if (cell instanceof Node) {
      const td = document.createElement("td");
      td.append(cell);
      tr.append(td);
    } else tr.append(el("td", cell ?? ""));
  }
  return tr;
}

/** Replaces a table's body rows. */
export function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
}

export function setStatus(text, kind) {
  const node = document.getElementById("estado");
  node.textContent = text;
  node.className = kind ?? "";
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** The token kept for this tab, if any (the browser client sends it in its `hello`). */
export function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

/** Forgets the token kept for this tab (the server refused it). */
export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Asks for the token in the page's dialog (`text` says what for); resolves false when the user cancels. */
export function askToken(text) {
  if (text !== undefined) document.getElementById("texto-token").textContent = text;
  const dialog = document.getElementById("dialogo-token");
  const input = document.getElementById("token");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "ok" && input.value !== "") {
        sessionStorage.setItem(TOKEN_KEY, input.value);
        resolve(true);
      } else resolve(false);
    }, { once: true });
    dialog.showModal();
  });
}

/** fetch() with the admin token; on 401 asks for a token and tries again. */
export async function adminFetch(url, init) {
  for (;;) {
    const response = await fetch(url, {
      ...init,
      headers: { ...(init?.headers ?? {}), ...authHeaders() },
    });
    if (response.status !== 401) return response;
    sessionStorage.removeItem(TOKEN_KEY);
    if (!(await askToken())) return response;
  }
}
