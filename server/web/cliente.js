// The browser client: task types from /api/tipos, a form built from each type's JSON Schema, and the
// colmena protocol (NDJSON frames, one per WebSocket message) over /ws. The server validates every
// submit; this page converts what is typed only as far as the field's kind says, so that a mistake
// is answered by the server, with its error code and Spanish message.
import { askToken, el, forgetToken, savedToken, setStatus } from "./comun.js";

let socket;
/** While the token dialog is open after an `UNAUTHORIZED`: resolves whether a token was given. */
let askingToken;
let types = [];
let nextId = 1;
const pending = new Map(); // request id → list item
const byTask = new Map(); // task id → list item

function field(name, schema, required) {
  const wrap = el("div", undefined, { class: "campo" });
  const label = el("label", `${schema.description ?? name}${required ? " *" : ""}`);
  let input;
  if (Array.isArray(schema.enum)) {
    input = el("select");
    for (const v of schema.enum) input.append(el("option", v, { value: JSON.stringify(v) }));
    input.dataset.kind = "enum";
  } else if (schema.type === "boolean") {
    input = el("input", undefined, { type: "checkbox" });
    input.dataset.kind = "boolean";
    if (schema.default === true) input.checked = true;
  } else if (
    schema.type === "string" && !(schema.maxLength !== undefined && schema.maxLength < 80)
  ) {
    input = el("textarea", undefined, { rows: "3" });
    input.dataset.kind = "string";
  } else {
    input = el("input", undefined, { type: "text" });
    input.dataset.kind = schema.type === "array" &&
        (schema.items?.type === "number" || schema.items?.type === "integer")
      ? "numbers"
      : schema.type === "number" || schema.type === "integer"
      ? "number"
      : schema.type === "string"
      ? "string"
      : "json";
  }
  if (input.dataset.kind === "numbers") input.placeholder = "números separados por espacios";
  if (input.dataset.kind === "json") input.placeholder = "JSON";
  if (schema.default !== undefined && input.dataset.kind !== "boolean") {
    input.value = typeof schema.default === "string"
      ? schema.default
      : input.dataset.kind === "numbers"
      ? schema.default.join(" ")
      : JSON.stringify(schema.default);
  }
  input.name = name;
  input.id = `campo-${name}`;
  label.setAttribute("for", input.id);
  wrap.append(label, input);
  return wrap;
}

function number(text) {
  const t = text.trim();
  const n = Number(t);
  return t !== "" && Number.isFinite(n) ? n : t;
}

function json(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function read(input) {
  switch (input.dataset.kind) {
    case "boolean":
      return input.checked;
    case "enum":
      return JSON.parse(input.value);
    case "number":
      return number(input.value);
    case "numbers":
      return input.value.trim() === "" ? [] : input.value.trim().split(/[\s,]+/).map(number);
    case "string":
      return input.value;
    default:
      return json(input.value);
  }
}

function buildForm() {
  const type = types.find((t) => t.name === document.getElementById("tipo").value);
  const fields = document.getElementById("campos");
  fields.replaceChildren();
  if (type === undefined) return;
  document.getElementById("descripcion").textContent = type.description;
  const schema = type.input;
  if (schema.type === "object" && schema.properties) {
    const required = new Set(schema.required ?? []);
    for (const [name, prop] of Object.entries(schema.properties)) {
      fields.append(field(name, prop, required.has(name)));
    }
    fields.dataset.whole = "";
  } else {
    fields.append(field("datos", { ...schema, type: "json-any" }, true));
    fields.dataset.whole = "true";
  }
}

function payload() {
  const fields = document.getElementById("campos");
  const inputs = [...fields.querySelectorAll("input, textarea, select")];
  if (fields.dataset.whole === "true") return read(inputs[0]);
  const out = {};
  for (const input of inputs) {
    if (input.dataset.kind !== "boolean" && input.value.trim() === "") continue; // left out
    out[input.name] = read(input);
  }
  return out;
}

function showError(text) {
  document.getElementById("error").textContent = text;
}

function showOutput(item, frame) {
  const status = { succeeded: "correcta", failed: "fallida", cancelled: "cancelada" }[frame.status];
  item.querySelector(".estado").textContent = status ?? frame.status;
  item.dataset.estado = frame.status;
  if (frame.error) {
    item.append(el("p", `${frame.error.code}: ${frame.error.message}`, { class: "error" }));
  }
  if (frame.output !== undefined) {
    const out = frame.output;
    if (out !== null && typeof out === "object" && !Array.isArray(out)) {
      const dl = el("dl");
      for (const [k, v] of Object.entries(out)) {
        dl.append(
          el("dt", k),
          el("dd", typeof v === "string" ? v : JSON.stringify(v), { "data-campo": k }),
        );
      }
      item.append(dl);
    } else item.append(el("pre", JSON.stringify(out, null, 2)));
  }
  if (frame.outputRef) {
    item.append(el("p", `Salida guardada como objeto (${frame.outputBytes} bytes)`));
  }
}

function onFrame(frame) {
  switch (frame.type) {
    case "welcome":
      setStatus(`conectado (protocolo ${frame.protocol})`, "bien");
      return;
    case "accepted": {
      const item = pending.get(frame.id);
      pending.delete(frame.id);
      if (item === undefined) return;
      item.dataset.tarea = frame.taskId;
      item.querySelector(".id").textContent = frame.taskId.slice(0, 8);
      item.querySelector(".estado").textContent = "en cola";
      byTask.set(frame.taskId, item);
      return;
    }
    case "result": {
      const item = byTask.get(frame.taskId);
      byTask.delete(frame.taskId);
      if (item !== undefined) showOutput(item, frame);
      return;
    }
    case "error": {
      if (frame.code === "UNAUTHORIZED") {
        // The server asks for a token (or refused this one): ask for it; the reconnect sends it.
        forgetToken();
        askingToken = askToken(
          "Este servidor pide un token de acceso (deno task cliente token crear).",
        );
        return;
      }
      const text = `${frame.code}: ${frame.message}`;
      showError(text);
      const item = frame.id === null ? undefined : pending.get(frame.id);
      if (item !== undefined) {
        pending.delete(frame.id);
        item.dataset.estado = "rechazada";
        item.querySelector(".estado").textContent = "rechazada";
        item.append(el("p", text, { class: "error" }));
      }
      return;
    }
    default:
      return;
  }
}

function connect() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    const token = savedToken();
    socket.send(JSON.stringify({
      type: "hello",
      id: `w${nextId++}`,
      protocol: 1,
      client: { name: "navegador", kind: "web" },
      ...(token === undefined ? {} : { token }),
    }));
  });
  socket.addEventListener("message", (event) => {
    try {
      onFrame(JSON.parse(event.data));
    } catch (err) {
      showError(`Respuesta ilegible del servidor: ${err.message}`);
    }
  });
  socket.addEventListener("close", async () => {
    setStatus("desconectado; reintentando…", "mal");
    if (askingToken !== undefined) {
      const given = await askingToken;
      askingToken = undefined;
      if (!given) return setStatus("sin token: recargue la página para intentarlo de nuevo", "mal");
      return connect();
    }
    setTimeout(connect, 2000);
  });
}

document.getElementById("formulario").addEventListener("submit", (event) => {
  event.preventDefault();
  showError("");
  if (socket?.readyState !== WebSocket.OPEN) return showError("Sin conexión con el servidor");
  const id = `w${nextId++}`;
  const type = document.getElementById("tipo").value;
  const item = el("li", undefined, { class: "resultado" });
  item.append(
    el("strong", type),
    " ",
    el("code", "…", { class: "id" }),
    " ",
    el("span", "enviando", { class: "estado" }),
  );
  document.getElementById("resultados").prepend(item);
  pending.set(id, item);
  socket.send(JSON.stringify({ type: "submit", id, task: { type, payload: payload() } }));
});

document.getElementById("tipo").addEventListener("change", buildForm);

const response = await fetch("/api/tipos");
types = (await response.json()).tipos;
const select = document.getElementById("tipo");
for (const t of types) select.append(el("option", `${t.label} (${t.name})`, { value: t.name }));
buildForm();
connect();
