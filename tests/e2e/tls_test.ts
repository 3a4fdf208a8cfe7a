/**
 * End to end: the server over TLS (`--tls-cert`/`--tls-key`) and mutual TLS (`--tls-ca-clientes`), with
 * `TaskClient` (`tls`, `ca`, `cert`, `key`). Certificates come from a CA made for the run (test_ca.ts).
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import { TaskClient } from "../../client/task_client.ts";
import { needsRabbit } from "../_helpers/services.ts";
import { RoleProcess, startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { opensslAvailable, TestCa } from "../_helpers/test_ca.ts";

const rabbit = await needsRabbit();
if (!rabbit.ignore && !(await opensslAvailable())) {
  throw new Error(
    "The TLS tests need the openssl CLI to make their certificates (.ci/run installs it)",
  );
}

/** Reads what the peer sends until it closes; `null` once it has. */
async function readUntilClosed(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  while (true) {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch {
      break; // reset by the peer: closed too
    }
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  return new Uint8Array(chunks.flatMap((c) => [...c]));
}

async function rejection(promise: Promise<unknown>): Promise<ColmenaError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ColmenaError, `expected a ColmenaError, got ${err}`);
    return err;
  }
  assert.fail("expected a rejection");
}

Deno.test({
  name: "a task goes over TLS from TaskClient to a real worker and its result comes back",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
    ]);
    await using _worker = await startWorker("w-tls", queues);
    await using client = new TaskClient({ port: server.port, tls: true, ca: ca.caCert });
    const output = await client.run("text", { text: "hola mundo seguro" });
    assert.equal(output.words, 3);
    assert.ok(server.lines.some((l) => l.startsWith("TLS activo")), server.lines.join("\n"));
  },
});

Deno.test({
  name: "plaintext sent to the TLS port is closed, and the server keeps serving a TLS client",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-plain");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
    ]);
    const plain = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await plain.write(new TextEncoder().encode('{"type":"hello","id":"h"}\n'));
    const answer = await readUntilClosed(plain);
    plain.close();
    assert.ok(
      !new TextDecoder().decode(answer).includes("welcome"),
      "a plaintext hello is never answered",
    );
    await using client = new TaskClient({ port: server.port, tls: true, ca: ca.caCert });
    const welcome = await client.connect();
    assert.ok(welcome.taskTypes.includes("text"));
    assert.equal(typeof await client.ping(), "number");
  },
});

Deno.test({
  name: "a client that does not trust the server's CA refuses it with TLS_FAILED naming --ca",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    await using otherCa = await TestCa.create("otra-ca");
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-ca");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
    ]);
    await using client = new TaskClient({
      port: server.port,
      ca: otherCa.caCert,
      reconnectForMs: 0,
    });
    const err = await rejection(client.connect());
    assert.equal(err.code, "TLS_FAILED");
    assert.match(err.message, /no está firmado por una CA de confianza/);
    assert.match(err.message, /--ca/);
  },
});

Deno.test({
  name:
    "a TLS client on a plain port fails with TLS_FAILED, a plain client on a TLS port gets no welcome",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-mix");
    await using plainServer = await startServer(queues);
    await using tlsClient = new TaskClient({
      port: plainServer.port,
      ca: ca.caCert,
      reconnectForMs: 0,
    });
    const err = await rejection(tlsClient.connect());
    assert.equal(err.code, "TLS_FAILED", err.message);

    await using tlsServer = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
    ]);
    await using plainClient = new TaskClient({ port: tlsServer.port, reconnectForMs: 0 });
    const closed = await rejection(plainClient.connect());
    assert.equal(closed.code, "CONNECTION_CLOSED");
  },
});

Deno.test({
  name: "under mutual TLS the client certificate's subject is the connection's principal",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    const ana = await ca.client("ana-certificada");
    await using queues = uniqueQueues("mtls");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
      "--tls-ca-clientes",
      ca.caCert,
    ]);
    await using _worker = await startWorker("w-mtls", queues);
    // The hello name says otherwise: the certificate wins, with the `cliente` role.
    await using client = new TaskClient({
      port: server.port,
      name: "dice-ser-admin",
      ca: ca.caCert,
      cert: ana.cert,
      key: ana.key,
    });
    const welcome = await client.connect();
    assert.deepEqual(welcome.principal, { name: "ana-certificada", role: "cliente" });
    const output = await client.run("numbers", { numbers: [1, 2, 3] });
    assert.equal(output.sum, 6);
    assert.ok(server.lines.some((l) => l.startsWith("TLS mutuo activo")), server.lines.join("\n"));
  },
});

Deno.test({
  name: "under mutual TLS a client without a certificate, or with another CA's, is refused",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    await using otherCa = await TestCa.create("otra-ca");
    const cert = await ca.server();
    const stranger = await otherCa.client("extrano");
    await using queues = uniqueQueues("mtls-no");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
      "--tls-ca-clientes",
      ca.caCert,
    ]);
    await using anonymous = new TaskClient({ port: server.port, ca: ca.caCert, reconnectForMs: 0 });
    const missing = await rejection(anonymous.connect());
    assert.equal(missing.code, "TLS_FAILED");
    assert.match(missing.message, /exige un certificado de cliente/);

    await using foreign = new TaskClient({
      port: server.port,
      ca: ca.caCert,
      cert: stranger.cert,
      key: stranger.key,
      reconnectForMs: 0,
    });
    const refused = await rejection(foreign.connect());
    assert.equal(refused.code, "TLS_FAILED");
    assert.match(refused.message, /rechazó el certificado de cliente \(--cert\)/);

    // The server is still there for a client with a good certificate.
    const ana = await ca.client("ana");
    await using good = new TaskClient({
      port: server.port,
      ca: ca.caCert,
      cert: ana.cert,
      key: ana.key,
    });
    assert.equal((await good.connect()).principal?.name, "ana");
  },
});

Deno.test({
  name: "a TLS handshake that never starts is dropped at the handshake deadline",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-stall");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
      "--tls-handshake-timeout-ms",
      "300",
      // Far above the handshake deadline: only that deadline can close the silent socket.
      "--idle-timeout-ms",
      "600000",
      "--partial-line-timeout-ms",
      "600000",
    ]);
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const received = await readUntilClosed(silent);
    silent.close();
    assert.equal(received.length, 0, "the server sends nothing and closes");
    await using client = new TaskClient({ port: server.port, ca: ca.caCert });
    await client.connect();
  },
});

Deno.test({
  name: "the TLS port refuses TLS 1.1 and accepts TLS 1.2 (openssl s_client)",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-version");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
    ]);
    const sClient = async (version: string) => {
      const out = await new Deno.Command("openssl", {
        args: [
          "s_client",
          "-connect",
          `127.0.0.1:${server.port}`,
          version,
          // Let this openssl offer TLS 1.1 at all: the refusal must come from the server.
          "-cipher",
          "DEFAULT:@SECLEVEL=0",
          "-CAfile",
          ca.caCert,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      return { ok: out.success, text };
    };
    const old = await sClient("-tls1_1");
    assert.equal(old.ok, false, old.text);
    // The server answers the TLS 1.1 hello with an alert: no session is set up.
    assert.match(old.text, /alert (protocol version|handshake failure)/i);
    assert.match(old.text, /Cipher is \(NONE\)/);
    const current = await sClient("-tls1_2");
    assert.match(current.text, /Protocol\s*:\s*TLSv1\.2/, current.text);
  },
});

Deno.test({
  name: "a missing or unusable TLS file stops the server at start with a Spanish message",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-files");
    const start = async (args: string[]) => {
      await using server = new RoleProcess("server.ts", [
        "--port",
        "0",
        "--sin-http",
        "--store",
        "memory",
        "--task-queue",
        queues.taskQueue,
        "--result-queue",
        queues.resultQueue,
        ...args,
      ]);
      const status = await server.status;
      return { code: status.code, said: server.lines.join("\n") };
    };
    const missing = await start(["--tls-cert", `${ca.dir}/no-existe.crt`, "--tls-key", cert.key]);
    assert.equal(missing.code, 1, missing.said);
    assert.match(missing.said, /No se puede usar el certificado TLS \(--tls-cert\): .*no existe/);

    const garbage = `${ca.dir}/basura.crt`;
    await Deno.writeTextFile(garbage, "esto no es un certificado\n");
    const unusable = await start(["--tls-cert", garbage, "--tls-key", cert.key]);
    assert.equal(unusable.code, 1, unusable.said);
    assert.match(
      unusable.said,
      /No se pueden usar el certificado y la clave TLS: --tls-cert no es/,
    );

    const stranger = await ca.client("otro");
    const mismatched = await start(["--tls-cert", cert.cert, "--tls-key", stranger.key]);
    assert.equal(mismatched.code, 1, mismatched.said);
    assert.match(mismatched.said, /la clave de --tls-key no es la de --tls-cert/);
  },
});

Deno.test({
  name: "a TLS client that does not read is dropped with SLOW_CONSUMER and others are still served",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-slow");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
      "--max-output-bytes",
      "65536",
    ]);
    const caCerts = [await Deno.readTextFile(ca.caCert)];
    const slow = await Deno.connectTls({ hostname: "localhost", port: server.port, caCerts });
    const line = new TextEncoder().encode('{"type":"ping","id":"p"}\n'.repeat(10_000));
    try {
      for (let i = 0; i < 40; i++) {
        let offset = 0;
        while (offset < line.length) offset += await slow.write(line.subarray(offset));
      }
    } catch {
      // the server closed the connection while we were still writing
    }
    await server.waitFor(/Se cierra la conexión \d+ .*SLOW_CONSUMER/, 20_000);
    slow.close();
    await using good = new TaskClient({ port: server.port, ca: ca.caCert });
    assert.equal(typeof await good.ping(), "number");
  },
});

Deno.test({
  name: "a TLS client that half-closes still gets the answers to what it sent",
  ...rabbit,
  async fn() {
    await using ca = await TestCa.create();
    const cert = await ca.server();
    await using queues = uniqueQueues("tls-half");
    await using server = await startServer(queues, [
      "--tls-cert",
      cert.cert,
      "--tls-key",
      cert.key,
    ]);
    const caCerts = [await Deno.readTextFile(ca.caCert)];
    const conn = await Deno.connectTls({ hostname: "localhost", port: server.port, caCerts });
    await conn.write(
      new TextEncoder().encode('{"type":"ping","id":"a"}\n{"type":"ping","id":"b"}\n'),
    );
    await conn.closeWrite();
    const text = new TextDecoder().decode(await readUntilClosed(conn));
    conn.close();
    const ids = text.trim().split("\n").map((l) => JSON.parse(l).id);
    assert.deepEqual(ids, ["a", "b"]);
  },
});
