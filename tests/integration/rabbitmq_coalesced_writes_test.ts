/**
 * amqplib's multiplexer, corked for each pass: a turn's frames leave in one socket write, every message
 * still arrives, in order. Against the real RabbitMQ.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import amqp from "amqplib";
import { coalesceWrites } from "../../shared/adapters/rabbitmq/coalesced_writes.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";

const MESSAGES = 200;

/** Publishes `MESSAGES` messages in one turn; returns the socket's writes meanwhile and what the queue got. */
async function publishOneTurn(coalesce: boolean): Promise<{ writes: number; bodies: string[] }> {
  const model = await amqp.connect(AMQP_URL, { noDelay: true });
  try {
    if (coalesce) assert.equal(coalesceWrites(model), true);
    const ch = await model.createConfirmChannel();
    const queue = `test.coalesce.${crypto.randomUUID()}`;
    await ch.assertQueue(queue, { durable: false, autoDelete: false });
    // deno-lint-ignore no-explicit-any
    const socket = (model as any).connection.muxer.out;
    let writes = 0;
    for (const method of ["_write", "_writev"]) {
      const original = socket[method];
      if (typeof original !== "function") continue;
      socket[method] = function (...args: unknown[]) {
        writes++;
        return original.apply(this, args);
      };
    }
    const confirms: Promise<void>[] = [];
    for (let i = 0; i < MESSAGES; i++) {
      confirms.push(
        new Promise((resolve, reject) =>
          ch.publish(
            "",
            queue,
            Buffer.from(String(i)),
            {},
            (err: unknown) => err ? reject(err) : resolve(),
          )
        ),
      );
    }
    await Promise.all(confirms);
    const counted = writes;
    const bodies: string[] = [];
    for (;;) {
      const msg = await ch.get(queue, { noAck: true });
      if (msg === false) break;
      bodies.push(msg.content.toString());
    }
    await ch.deleteQueue(queue);
    return { writes: counted, bodies };
  } finally {
    await model.close();
  }
}

Deno.test({
  name:
    "a turn's publishes leave in a few socket writes instead of one each, and all arrive in order",
  ...(await needsRabbit()),
  async fn() {
    const plain = await publishOneTurn(false);
    const corked = await publishOneTurn(true);
    const expected = Array.from({ length: MESSAGES }, (_, i) => String(i));
    assert.deepEqual(plain.bodies, expected);
    assert.deepEqual(corked.bodies, expected);
    // Without it, amqplib writes each message on its own; with it, the pass goes out at once.
    assert.ok(plain.writes >= MESSAGES, `plain: ${plain.writes} writes`);
    assert.ok(corked.writes <= 5, `coalesced: ${corked.writes} writes`);
  },
});

Deno.test("coalesceWrites leaves alone a connection whose internals it does not know", () => {
  assert.equal(coalesceWrites({} as never), false);
  assert.equal(coalesceWrites({ connection: { muxer: { _readIncoming() {} } } } as never), false);
});

Deno.test("coalesceWrites runs a scheduled pass once, at the end of the callback, not a turn later", async () => {
  const log: string[] = [];
  const mux = {
    scheduledRead: false,
    out: { cork: () => log.push("cork"), uncork: () => log.push("uncork") },
    _readIncoming: () => log.push("pass"),
    _scheduleRead: () => log.push("amqplib's schedule"),
  };
  assert.equal(coalesceWrites({ connection: { muxer: mux } } as never), true);
  mux._scheduleRead();
  mux._scheduleRead();
  log.push("end of callback");
  await new Promise((resolve) => setImmediate(resolve));
  log.push("next turn");
  assert.deepEqual(log, ["end of callback", "cork", "pass", "uncork", "next turn"]);
  assert.equal(mux.scheduledRead, false);
});
