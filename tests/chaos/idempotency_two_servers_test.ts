/**
 * Chaos: the same idempotency keys submitted at the same moment to two servers that share PostgreSQL. Each
 * key ends with one record and one execution, and both clients get the same task id and the same result.
 */
import assert from "node:assert/strict";
import pg from "pg";
import { TaskClient } from "../../client.ts";
import { DATABASE_URL, needsPostgres, needsRabbit } from "../_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { uniqueSchema } from "../_helpers/balancer.ts";
import { report, scaled, withDeadline } from "../_helpers/chaos.ts";

const ignore = (await needsRabbit()).ignore || (await needsPostgres()).ignore;

Deno.test({
  name:
    "one idempotency key submitted concurrently to two servers sharing PostgreSQL: one record, one execution, the same id and result for both",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const started = Date.now();
    await using queues = uniqueQueues("idem2");
    await using schema = uniqueSchema();
    const store = [
      "--store",
      "postgres",
      "--database-url",
      DATABASE_URL,
      "--db-schema",
      schema.name,
    ];
    await using s1 = await startServer(queues, [...store, "--server-id", "idem-1"]);
    await using s2 = await startServer(queues, [...store, "--server-id", "idem-2"]);
    await using _w1 = await startWorker("w1", queues, ["--concurrency", "20"]);
    await using _w2 = await startWorker("w2", queues, ["--concurrency", "20"]);
    // The same principal on both servers (without tokens, the hello name): keys are scoped to it.
    await using a = new TaskClient({ host: "127.0.0.1", port: s1.port, name: "mismo" });
    await using b = new TaskClient({ host: "127.0.0.1", port: s2.port, name: "mismo" });
    await Promise.all([a.connect(), b.connect()]);

    const keys = Array.from({ length: scaled(100) }, (_, i) => `clave-${i}-${crypto.randomUUID()}`);
    const pairs = await Promise.all(keys.map((key, i) => {
      const payload = { message: `tarea ${i}` };
      return Promise.all([
        a.submit("echo", payload, { idempotencyKey: key }),
        b.submit("echo", payload, { idempotencyKey: key }),
      ]);
    }));
    const results = await withDeadline(
      Promise.all(
        pairs.map(([idA, idB]) => Promise.all([a.result<"echo">(idA), b.result<"echo">(idB)])),
      ),
      "every result on both servers",
      60_000,
    );

    const db = new pg.Client({ connectionString: DATABASE_URL });
    await db.connect();
    const { rows } = await db.query<{ key: string; n: string; attempts: number }>(
      `SELECT idempotency_key AS key, count(*) AS n, max(attempts) AS attempts
         FROM ${schema.name}.tasks GROUP BY idempotency_key`,
    );
    await db.end();
    const differentIds = pairs.filter(([idA, idB]) => idA !== idB).length;
    const extraRecords = rows.reduce((n, r) => n + Number(r.n) - 1, 0);
    const rerun = rows.filter((r) => r.attempts > 1).length;
    await report({
      escenario: "misma clave de idempotencia a la vez en dos servidores",
      tareas: keys.length,
      fallos: `${keys.length} claves enviadas a la vez a los dos servidores`,
      resultados: results.length,
      duplicadosEntregados: 0,
      perdidas: keys.length - results.length,
      ms: Date.now() - started,
      notas: `${differentIds} ids distintos, ${extraRecords} registros de más, ${rerun} repetidas`,
    });
    assert.equal(differentIds, 0, "both clients got the same task id for each key");
    assert.equal(rows.length, keys.length);
    assert.equal(extraRecords, 0, "one record per key");
    assert.equal(rerun, 0, "each task ran once");
    results.forEach(([ra, rb], i) => {
      assert.equal(ra.status, "succeeded");
      assert.deepEqual(ra, rb);
      if (ra.status === "succeeded") assert.equal(ra.output.message, `tarea ${i}`);
    });
  },
});
