/**
 * Unit tests of `shared/adapters/rabbitmq/result_intake.ts`'s byte budget: what it holds, when it is full and
 * roomy again, and the prefetch it gives a consumer for the message sizes seen.
 */
import assert from "node:assert/strict";
import { IntakeBudget } from "../../shared/adapters/rabbitmq/result_intake.ts";

const KIB = 1024;
const MIB = 1024 * KIB;

Deno.test("the first prefetch assumes 1 MiB messages and splits the budget among the consumers", () => {
  assert.equal(new IntakeBudget({ maxBytes: 64 * MIB, maxPrefetch: 500 }).prefetch(), 64);
  assert.equal(
    new IntakeBudget({ maxBytes: 64 * MIB, maxPrefetch: 500, consumers: 2 }).prefetch(),
    32,
  );
  // Never below one message, never above the count cap.
  assert.equal(new IntakeBudget({ maxBytes: 100, maxPrefetch: 500 }).prefetch(), 1);
  assert.equal(new IntakeBudget({ maxBytes: 10_000 * MIB, maxPrefetch: 500 }).prefetch(), 500);
});

Deno.test("the prefetch grows as small messages come and shrinks at once for a large one", () => {
  const budget = new IntakeBudget({ maxBytes: 64 * MIB, maxPrefetch: 500 });
  for (let i = 0; i < 200; i++) {
    budget.take(2 * KIB);
    budget.settle(2 * KIB);
  }
  assert.equal(budget.prefetch(), 500);
  budget.take(4 * MIB);
  assert.equal(budget.prefetch(), 15, "(64 - 4) MiB of room in 4 MiB messages");
  budget.settle(4 * MIB);
  assert.equal(budget.prefetch(), 16);
});

Deno.test("the budget is full at its size and roomy again at half of it", () => {
  const budget = new IntakeBudget({ maxBytes: 8 * MIB, maxPrefetch: 500 });
  budget.take(5 * MIB);
  assert.equal(budget.full, false);
  assert.equal(budget.roomy, false);
  budget.take(3 * MIB);
  assert.equal(budget.full, true);
  assert.equal(budget.held, 8 * MIB);
  budget.settle(3 * MIB);
  assert.equal(budget.full, false);
  assert.equal(budget.roomy, false, "5 MiB still held");
  budget.settle(1 * MIB);
  assert.equal(budget.roomy, true);
  budget.settle(10 * MIB);
  assert.equal(budget.held, 0, "never below zero");
});

Deno.test("a budget of zero bytes is a programmer error", () => {
  assert.throws(() => new IntakeBudget({ maxBytes: 0, maxPrefetch: 500 }), RangeError);
});
