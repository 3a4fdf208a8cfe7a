/**
 * Unit: what `cliente enviar` prints while it works (client/send_feedback.ts).
 *
 * @module
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import {
  clientCommand,
  interruptHint,
  SendFeedback,
  serverFlags,
} from "../../client/send_feedback.ts";

Deno.test("printed commands keep --host and --port only when they are not the defaults", () => {
  assert.equal(serverFlags({ host: "localhost", port: 8888 }), "");
  assert.equal(
    clientCommand({ host: "localhost", port: 8888 }, "estado x"),
    "deno task -q cliente estado x",
  );
  assert.equal(
    clientCommand({ host: "10.0.0.5", port: 9000 }, "historial --cursor c"),
    "deno task -q cliente --host 10.0.0.5 --port 9000 historial --cursor c",
  );
  assert.match(
    interruptHint("t1", { host: "localhost", port: 7000 }),
    /sigue en cola.*Sígala con: deno task -q cliente --port 7000 estado t1$/,
  );
});

Deno.test("on a terminal, enviar shows a waiting indicator after Aceptada and clears it when done", async () => {
  const written: string[] = [];
  const feedback = new SendFeedback({
    server: { host: "localhost", port: 8888 },
    terminal: true,
    write: (text) => written.push(text),
  });
  feedback.accepted("t1");
  await sleep(300);
  feedback.done();
  assert.equal(written[0], "Aceptada: t1 (en cola)\n");
  assert.ok(written.some((t) => /Esperando el resultado… \d+ s/.test(t)), written.join("|"));
  assert.equal(written.at(-1), "\r\x1b[2K");
});

Deno.test("upload progress comes in quarters off a terminal, for files of 1 MiB or more", async () => {
  const written: string[] = [];
  const feedback = new SendFeedback({
    server: { host: "localhost", port: 8888 },
    terminal: false,
    write: (text) => written.push(text),
  });
  const piece = new Uint8Array(256 * 1024);
  const counted = feedback.upload(ReadableStream.from([piece, piece, piece, piece]), 1024 * 1024);
  for await (const _ of counted) { /* read it all, as the upload does */ }
  assert.equal(written.length, 4, written.join(""));
  assert.match(written[3]!, /\(100 %\)\n$/);
});
