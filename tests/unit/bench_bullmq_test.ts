import assert from "node:assert/strict";
import { bulkSizes } from "../../bench/bullmq_load.ts";
import { processBenchJob } from "../../bench/bullmq_worker.ts";

Deno.test("bulkSizes splits jobs into full bulks and a last partial one", () => {
  assert.deepEqual(bulkSizes(2500, 1000), [1000, 1000, 500]);
  assert.deepEqual(bulkSizes(2000, 1000), [1000, 1000]);
  assert.deepEqual(bulkSizes(3, 1000), [3]);
  assert.deepEqual(bulkSizes(0, 1000), []);
});

Deno.test("bulkSizes rejects a bulk size below 1 and fractional counts", () => {
  assert.throws(() => bulkSizes(10, 0), RangeError);
  assert.throws(() => bulkSizes(1.5, 10), RangeError);
});

Deno.test("the BullMQ bench processor answers with the task spec's type", () => {
  assert.deepEqual(processBenchJob({ type: "echo", payload: {} }), { ok: true, type: "echo" });
  assert.deepEqual(processBenchJob("not a spec"), { ok: true, type: "desconocido" });
});
