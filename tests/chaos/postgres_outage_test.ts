/**
 * Chaos: PostgreSQL stalls (a TCP proxy that keeps connections open and drops every byte for 10 s) or goes
 * away (connections cut and refused, as in a restart) in the middle of a stream of submits. No process
 * crashes; each submit is answered, `accepted` or `STORE_UNAVAILABLE` (retryable, and then nothing is
 * published); results that arrive meanwhile are recorded once the store is back; every accepted task gets
 * one result and a final record, and status queries recover by themselves.
 *
 * The local PostgreSQL is shared, so the outage is made through a proxy between it and the server. With
 * `COLMENA_CAOS_PG_RESTART=1` (`deno task caos`) the PostgreSQL cluster itself is restarted
 * (`pg_ctlcluster … restart -m fast`) instead of cutting the proxy.
 */
import assert from "node:assert/strict";
import { DATABASE_URL, needsPostgres, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { RawClient } from "../_helpers/raw_client.ts";
import { TcpProxy } from "../_helpers/tcp_proxy.ts";
import { uniqueSchema } from "../_helpers/balancer.ts";
import {
  acceptedOrRefused,
  extraResults,
  fetchRecords,
  report,
  resultCounts,
  scaled,
  sendSubmits,
  type TaskSpec,
  waitUntil,
} from "../_helpers/chaos.ts";

const ignore = (await needsRabbit()).ignore || (await needsPostgres()).ignore;
const restartPostgres = Deno.env.get("COLMENA_CAOS_PG_RESTART") === "1";

function specAt(i: number): TaskSpec {
  if (i % 4 === 0) return { type: "sleep", payload: { ms: 30 } };
  return { type: "echo", payload: { message: `tarea ${i}` } };
}

interface Outage {
  readonly label: string;
  begin(): Promise<void> | void;
  end(): Promise<void> | void;
}

async function runOutage(proxy: TcpProxy, outage: Outage, outageMs: number): Promise<void> {
  const started = Date.now();
  const total = scaled(400);
  const wave = 10;
  await using queues = uniqueQueues("pgout");
  await using schema = uniqueSchema();
  const url = new URL(DATABASE_URL);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  await using server = await startServer(queues, [
    "--store",
    "postgres",
    "--database-url",
    url.href,
    "--db-schema",
    schema.name,
  ]);
  await using _w1 = await startWorker("w1", queues, ["--concurrency", "20"]);
  await using _w2 = await startWorker("w2", queues, ["--concurrency", "20"]);
  await using client = await RawClient.connect(server.port);

  const requestIds: string[] = [];
  let outageDone: Promise<void> | undefined;
  const paced = Math.max(15, Math.floor((outageMs * 2) / (total / wave)));
  for (let sent = 0; sent < total; sent += wave) {
    if (outageDone === undefined && sent >= total / 4) {
      await outage.begin();
      outageDone = new Promise<void>((resolve) => setTimeout(resolve, outageMs))
        .then(() => outage.end());
    }
    const specs = Array.from({ length: Math.min(wave, total - sent) }, (_, k) => specAt(sent + k));
    requestIds.push(...await sendSubmits(client, `s${sent}-`, specs));
    await new Promise((resolve) => setTimeout(resolve, paced));
  }
  await outageDone;
  const { accepted, refused: unavailable } = await acceptedOrRefused(
    client,
    requestIds,
    "STORE_UNAVAILABLE",
    90_000,
  );
  await waitUntil(
    () => accepted.every((taskId) => resultCounts(client.frames).has(taskId)),
    `a result for each of the ${accepted.length} accepted tasks`,
    90_000,
  );
  // Status queries work again, and every accepted task's record is final.
  const records = await fetchRecords(server.port, accepted);
  for (const taskId of accepted) {
    assert.equal(records.get(taskId)?.status, "succeeded", `record of ${taskId}`);
  }
  const counts = resultCounts(client.frames);
  // Only accepted tasks ran: a refused submit published nothing whose result could come back.
  const foreign = [...counts.keys()].filter((taskId) => !accepted.includes(taskId)).length;
  const duplicated = extraResults(counts);
  const lost = accepted.filter((id) => !counts.has(id)).length;
  await report({
    escenario: outage.label,
    tareas: accepted.length,
    fallos: `PostgreSQL fuera ${outageMs} ms con ${total} envíos en curso`,
    resultados: counts.size,
    duplicadosEntregados: duplicated,
    perdidas: lost,
    ms: Date.now() - started,
    notas: `${unavailable} STORE_UNAVAILABLE`,
  });
  assert.equal(lost, 0, "every accepted task has a result");
  assert.equal(duplicated, 0, "no result reached the client twice");
  assert.equal(foreign, 0, "no result for a refused submit");
  assert.ok(unavailable > 0, "submits during the outage were refused");
  assert.equal(accepted.length + unavailable, total);
}

function pgProxy(): TcpProxy {
  const target = new URL(DATABASE_URL);
  const proxy = new TcpProxy({ hostname: target.hostname, port: Number(target.port || 5432) });
  proxy.restore();
  return proxy;
}

Deno.test({
  name:
    "PostgreSQL stalled for 10 s mid-stream: submits get STORE_UNAVAILABLE, results are recorded once it is back, nothing accepted is lost",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using proxy = pgProxy();
    await runOutage(proxy, {
      label: "PostgreSQL atascado 10 s (proxy TCP)",
      begin: () => proxy.stall(),
      // What was sent meanwhile is lost for good: the stalled connections end, new ones go through.
      end: async () => {
        await proxy.cut();
        proxy.restore();
      },
    }, 10_000);
  },
});

async function pgCtlRestart(): Promise<void> {
  const versions = [...Deno.readDirSync("/etc/postgresql")].map((e) => e.name);
  for (const version of versions) {
    const out = await new Deno.Command("pg_ctlcluster", {
      args: ["--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
  }
}

Deno.test({
  name: restartPostgres
    ? "PostgreSQL restarted (pg_ctlcluster restart -m fast) mid-stream: nothing accepted is lost"
    : "PostgreSQL gone for 3 s (connections cut and refused) mid-stream: nothing accepted is lost",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using proxy = pgProxy();
    // The restart runs while submits go on (they must meet it), and is awaited when the outage ends.
    let restarting: Promise<void> | undefined;
    await runOutage(
      proxy,
      restartPostgres
        ? {
          label: "reinicio real de PostgreSQL",
          begin: () => {
            restarting = pgCtlRestart();
          },
          end: () => restarting,
        }
        : {
          label: "PostgreSQL caído 3 s (proxy TCP cortado)",
          begin: () => proxy.cut(),
          end: () => proxy.restore(),
        },
      3_000,
    );
  },
});
