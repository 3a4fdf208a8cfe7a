// The dashboard: reads /eventos (Server-Sent Events, read through fetch so that it can carry the admin
// token) and redraws tables and charts from each snapshot. Untrusted strings are written as text only.
import { adminFetch, el, fillTable, row, setStatus } from "./comun.js";

const SVG = "http://www.w3.org/2000/svg";
const STATUS_ES = {
  queued: "en cola",
  running: "en curso",
  succeeded: "correcta",
  failed: "fallida",
  cancelled: "cancelada",
};
const KIND_ES = { task: "tareas", retry: "reintentos", result: "resultados", dlq: "fallidas" };

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return `hace ${s} s`;
}

function ms(n) {
  if (n === undefined || n === null) return "";
  return n < 10 ? `${n.toFixed(2)} ms` : `${Math.round(n)} ms`;
}

function idButton(taskId) {
  const button = el("button", taskId.slice(0, 8), {
    type: "button",
    class: "enlace",
    title: taskId,
  });
  button.addEventListener("click", () => inspect(taskId));
  return button;
}

function chart(id, values) {
  const svg = document.getElementById(id);
  const max = Math.max(1, ...values.filter((v) => v !== null));
  const n = Math.max(values.length, 2);
  const points = [];
  values.forEach((v, i) => {
    if (v === null) return;
    const x = (i / (n - 1)) * 300;
    const y = 78 - (v / max) * 74;
    points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("class", "linea");
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", "2");
  label.setAttribute("y", "10");
  label.setAttribute("class", "escala");
  label.textContent = `máx ${Math.round(max)} · últimos ${values.length} s`;
  svg.replaceChildren(line, label);
}

function render(s) {
  document.getElementById("num-workers").textContent = String(s.workers.length);
  fillTable(
    "workers",
    s.workers.map((w) =>
      row([
        w.worker,
        w.host,
        (w.types ?? []).join(", "),
        w.inProgress,
        w.processed,
        w.failed,
        ago(w.lastSeen),
      ])
    ),
  );
  fillTable(
    "colas",
    (s.queues ?? []).map((q) =>
      row([q.queue, KIND_ES[q.kind] ?? q.kind, q.taskType ?? "", q.messages, q.consumers])
    ),
  );
  const done = s.series.map((p) => p.succeeded + p.failed);
  chart("grafica-tps", done);
  chart("grafica-latencia", s.series.map((p) => p.latencyMs));
  document.getElementById("tps").textContent = String(done.at(-1) ?? 0);
  const lastLatency = s.series.findLast((p) => p.latencyMs !== null);
  document.getElementById("latencia").textContent = lastLatency ? ms(lastLatency.latencyMs) : "–";
  fillTable(
    "por-tipo",
    Object.keys(s.byType).sort().map((type) => {
      const c = s.byType[type];
      return row([
        type,
        c.submitted ?? 0,
        c.accepted ?? 0,
        c.succeeded ?? 0,
        c.failed ?? 0,
        c.cancelled ?? 0,
      ]);
    }),
  );
  const kinds = [...new Set([...Object.keys(s.acceptedByKind), ...Object.keys(s.clientsByKind)])];
  fillTable(
    "por-clase",
    kinds.sort().map((k) => row([k, s.acceptedByKind[k] ?? 0, s.clientsByKind[k] ?? 0])),
  );
  fillTable(
    "recientes",
    s.recent.map((t) =>
      row([
        idButton(t.taskId),
        t.taskType,
        el("span", STATUS_ES[t.status] ?? t.status, { class: `estado-${t.status}` }),
        `${t.client.name} (${t.client.kind})`,
        t.worker ?? "",
        ms(t.durationMs),
      ])
    ),
  );
  fillTable(
    "fallos",
    s.failures.map((t) => {
      const requeue = el("button", "Reencolar", { type: "button" });
      requeue.addEventListener("click", () => act(t.taskId, "reencolar"));
      return row([
        idButton(t.taskId),
        t.taskType,
        t.client.name,
        t.error ? `${t.error.code}: ${t.error.message}` : "",
        requeue,
      ]);
    }),
  );
}

function notice(text) {
  document.getElementById("aviso").textContent = text;
}

async function inspect(taskId) {
  document.getElementById("id-tarea").value = taskId;
  const response = await adminFetch(`/api/tareas/${encodeURIComponent(taskId)}`);
  const body = await response.json();
  if (!response.ok) {
    notice(body.message ?? `Error ${response.status}`);
    document.getElementById("detalle").textContent = "";
    return;
  }
  notice("");
  document.getElementById("detalle").textContent = JSON.stringify(body, null, 2);
}

async function act(taskId, action) {
  const response = await adminFetch(`/api/tareas/${encodeURIComponent(taskId)}/${action}`, {
    method: "POST",
  });
  const body = await response.json();
  if (!response.ok) return notice(body.message ?? `Error ${response.status}`);
  if (action === "reencolar") notice(`Reencolada: ${body.reencoladas.join(", ")}`);
  else notice(body.cancelled ? `Cancelada: ${body.taskId}` : `No se pudo cancelar: ${body.status}`);
}

async function follow() {
  for (;;) {
    let ended = "conexión perdida";
    try {
      const response = await adminFetch("/eventos");
      if (response.status === 401) {
        setStatus("sin autorización: hace falta un token de administrador", "mal");
        await new Promise((r) => setTimeout(r, 30_000));
        continue;
      }
      if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status}`);
      setStatus("en directo", "bien");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (event === "snapshot") render(JSON.parse(data));
          else if (event === "fin") ended = "el servidor se está apagando";
        }
      }
    } catch (err) {
      ended = `conexión perdida (${err.message})`;
    }
    setStatus(`desconectado: ${ended}; reintentando…`, "mal");
    document.body.dataset.fin = ended;
    await new Promise((r) => setTimeout(r, 3000));
  }
}

document.getElementById("form-inspeccion").addEventListener("submit", (event) => {
  event.preventDefault();
  inspect(document.getElementById("id-tarea").value.trim());
});
document.getElementById("reencolar").addEventListener(
  "click",
  () => act(document.getElementById("id-tarea").value.trim(), "reencolar"),
);
document.getElementById("cancelar").addEventListener(
  "click",
  () => act(document.getElementById("id-tarea").value.trim(), "cancelar"),
);
follow();
