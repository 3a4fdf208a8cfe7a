/**
 * Integration: a worker channel acknowledges its deliveries with one `multiple` ack over the contiguous
 * prefix of settled deliveries, never over one still unsettled (a task still running, or whose copy failed
 * and is made again later with the delivery unacked). Checked against the real broker: what it delivers
 * again once the channel closes is exactly what was never settled.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { setTimeout as delay } from "node:timers/promises";
import amqp from "amqplib";
import type { Channel, ConsumeMessage } from "amqplib";
import { AckWindow } from "../../shared/adapters/rabbitmq/ack_window.ts";
import { AMQP_URL, needsRabbit } from "../_helpers/services.ts";

const rabbit = await needsRabbit();

interface Frame {
  method: "ack" | "nack";
  body: string;
  multiple: boolean;
}

/** Publishes `count` messages "1".."count" on a fresh queue and consumes them all on a recording channel. */
async function _deliveries(count: number) {
  const model = await amqp.connect(AMQP_URL);
  const queue = `ack-window-${crypto.randomUUID()}`;
  const admin = await model.createChannel();
  await admin.assertQueue(queue, { durable: false });
  for (let i = 1; i <= count; i++) admin.sendToQueue(queue, Buffer.from(String(i)));
  const ch: Channel = await model.createChannel();
  await ch.prefetch(count);
  const frames: Frame[] = [];
  const recording = {
    ack(msg: ConsumeMessage, multiple?: boolean) {
      frames.push({ method: "ack", body: msg.content.toString(), multiple: multiple === true });
      ch.ack(msg, multiple);
    },
    nack(msg: ConsumeMessage, multiple?: boolean, requeue?: boolean) {
      frames.push({ method: "nack", body: msg.content.toString(), multiple: multiple === true });
      ch.nack(msg, multiple, requeue);
    },
  };
  const window = new AckWindow(recording);
  const msgs = new Map<string, ConsumeMessage>();
  await ch.consume(queue, (msg) => {
    if (msg === null) return;
    window.hold(msg);
    msgs.set(msg.content.toString(), msg);
  });
  const deadline = Date.now() + 10_000;
  while (msgs.size < count) {
    if (Date.now() > deadline) throw new Error("Timed out waiting for the deliveries");
    await delay(10);
  }
  /** Closes the consuming channel and returns the bodies the broker holds again, in order. */
  async function requeued(): Promise<string[]> {
    await ch.close();
    const bodies: string[] = [];
    for (;;) {
      const msg = await admin.get(queue, { noAck: true });
      if (msg === false) break;
      bodies.push(msg.content.toString());
    }
    await admin.deleteQueue(queue);
    await model.close();
    return bodies.sort((a, b) => Number(a) - Number(b));
  }
  return { window, frames, msg: (body: string) => msgs.get(body)!, requeued };
}

Deno.test({
  name: "deliveries settled in one turn, in any order, leave in a single multiple ack",
  ...rabbit,
  async fn() {
    const { window, frames, msg, requeued } = await _deliveries(6);
    for (const body of ["3", "1", "6", "2", "5", "4"]) window.ack(msg(body));
    assert.deepEqual(frames, [], "acks wait for the end of the turn");
    await delay(20);
    assert.deepEqual(frames, [{ method: "ack", body: "6", multiple: true }]);
    assert.equal(window.size, 0);
    assert.deepEqual(await requeued(), []);
  },
});

Deno.test({
  name:
    "an unsettled delivery in the middle (a failed copy retried later) is never covered by a later multiple ack",
  ...rabbit,
  async fn() {
    const { window, frames, msg, requeued } = await _deliveries(6);
    // 3 failed its copy: the runner keeps it unacked and tries again later; the others completed out of order.
    for (const body of ["2", "5", "1", "4", "6"]) window.ack(msg(body));
    window.flush();
    assert.deepEqual(frames, [
      { method: "ack", body: "2", multiple: true },
      { method: "ack", body: "5", multiple: false },
      { method: "ack", body: "4", multiple: false },
      { method: "ack", body: "6", multiple: false },
    ]);
    assert.equal(window.size, 1, "only 3 is still held");
    assert.deepEqual(await requeued(), ["3"], "the broker still holds 3, and only 3");
  },
});

Deno.test({
  name: "once the gap settles, the next acks leave again as one multiple ack from it",
  ...rabbit,
  async fn() {
    const { window, frames, msg, requeued } = await _deliveries(8);
    for (const body of ["1", "2", "4"]) window.ack(msg(body));
    window.flush();
    window.nack(msg("5"), true); // handed back: rejected at once, on its own
    for (const body of ["3", "6", "7"]) window.ack(msg(body));
    window.flush();
    assert.deepEqual(frames, [
      { method: "ack", body: "2", multiple: true },
      { method: "ack", body: "4", multiple: false },
      { method: "nack", body: "5", multiple: false },
      { method: "ack", body: "7", multiple: true },
    ]);
    assert.deepEqual(await requeued(), ["5", "8"]);
  },
});
