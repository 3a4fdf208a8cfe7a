import { TaskClient } from "/work/main/client.ts";
import { DATABASE_URL } from "/work/main/tests/_helpers/services.ts";
import { startServer, startWorker, uniqueQueues } from "/work/main/tests/_helpers/processes.ts";
import { uniqueSchema } from "/work/main/tests/_helpers/balancer.ts";
await using queues = uniqueQueues("idemdbg");
await using schema = uniqueSchema();
const store = ["--store", "postgres", "--database-url", DATABASE_URL, "--db-schema", schema.name];
await using s1 = await startServer(queues, [...store, "--server-id", "idem-1"]);
await using s2 = await startServer(queues, [...store, "--server-id", "idem-2"]);
await using _w1 = await startWorker("w1", queues, ["--concurrency", "20"]);
await using a = new TaskClient({ host: "127.0.0.1", port: s1.port, name: "mismo" });
await using b = new TaskClient({ host: "127.0.0.1", port: s2.port, name: "mismo" });
await Promise.all([a.connect(), b.connect()]);
const keys = Array.from({ length: 100 }, (_, i) => `k-${i}-${crypto.randomUUID()}`);
const pairs = await Promise.all(keys.map((key, i) =>
  Promise.all([
    a.submit("echo", { message: i }, { idempotencyKey: key }),
    b.submit("echo", { message: i }, { idempotencyKey: key }),
  ])
));
let gotA = 0, gotB = 0;
const missA: string[] = [], missB: string[] = [];
pairs.forEach(([ia, ib]) => {
  a.result(ia).then(() => gotA++);
  b.result(ib).then(() => gotB++);
});
await new Promise((r) => setTimeout(r, 8000));
console.log("same ids", pairs.filter(([x, y]) => x === y).length, "gotA", gotA, "gotB", gotB);
for (const [ia, ib] of pairs) {
  const va = await a.status(ia);
  const vb = await b.status(ib);
  if (va.status !== "succeeded" || vb.status !== "succeeded") {
    console.log(ia, va.status, ib, vb.status);
  }
}
console.log(s1.lines.filter((l) => /warn|error|Error|WARN/i.test(l)).slice(0, 10));
console.log(s2.lines.filter((l) => /warn|error|Error|WARN/i.test(l)).slice(0, 10));
