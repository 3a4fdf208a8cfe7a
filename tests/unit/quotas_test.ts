/**
 * Unit: the quota book of one server, with an injected clock for what an end-to-end test cannot wait for
 * (an hour's window, a task whose result never came).
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import { PrincipalQuotas, type QuotaLimits } from "../../server/quotas.ts";
import type { Principal } from "../../server/principal.ts";

const LIMITS: QuotaLimits = {
  quotaInFlight: 2,
  quotaSubmitRate: 100,
  quotaMaxPriority: 5,
  quotaBudgetMs: 100_000,
  quotaUploads: 1,
  quotaUploadBytes: 10,
};
const CLIENTE: Principal = { name: "bea", role: "cliente" };
const ADMIN: Principal = { name: "ana", role: "admin" };
const ASK = { priority: 0, maxAttempts: 1, timeoutMs: 1_000 };

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(err instanceof ColmenaError);
    return err.code;
  }
}

Deno.test("a task in flight whose result never comes stops counting once it cannot be running", () => {
  let now = 0;
  const quotas = new PrincipalQuotas(LIMITS, { now: () => now });
  quotas.admitSubmit(CLIENTE, ASK).track("t1", ASK);
  quotas.admitSubmit(CLIENTE, ASK).track("t2", ASK);
  assert.equal(code(() => quotas.admitSubmit(CLIENTE, ASK)), "QUOTA_EXCEEDED");
  now += 1_000 + 300_000 + 60_000 + 1;
  assert.equal(quotas.inFlight("bea"), 0);
  assert.equal(code(() => quotas.admitSubmit(CLIENTE, ASK).release()), undefined);
});

Deno.test("a released slot and a finished task free their place in flight", () => {
  const quotas = new PrincipalQuotas(LIMITS);
  quotas.admitSubmit(CLIENTE, ASK).release();
  quotas.admitSubmit(CLIENTE, ASK).track("t1", ASK);
  quotas.admitSubmit(CLIENTE, ASK).track("t2", ASK);
  quotas.finished("t1");
  assert.equal(quotas.inFlight("bea"), 1);
});

Deno.test("upload quotas reset after an hour, and admins are never counted", () => {
  let now = 0;
  const quotas = new PrincipalQuotas(LIMITS, { now: () => now });
  quotas.admitUpload(CLIENTE);
  assert.equal(code(() => quotas.admitUpload(CLIENTE)), "QUOTA_EXCEEDED");
  assert.equal(code(() => quotas.addUploadBytes(CLIENTE, 11)), "QUOTA_EXCEEDED");
  now += 3_600_000;
  assert.equal(code(() => quotas.admitUpload(CLIENTE)), undefined);
  assert.equal(code(() => quotas.addUploadBytes(CLIENTE, 10)), undefined);
  for (let i = 0; i < 5; i++) quotas.admitUpload(ADMIN);
  assert.equal(code(() => quotas.addUploadBytes(ADMIN, 1_000)), undefined);
  assert.equal(
    code(() => quotas.admitSubmit(ADMIN, { priority: 9, maxAttempts: 20, timeoutMs: 3_600_000 })),
    undefined,
  );
});
