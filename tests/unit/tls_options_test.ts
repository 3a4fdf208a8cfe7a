/**
 * TLS options: the configuration of each role, the launcher's read access to the files they name, the
 * PostgreSQL CA in the URL, and the client's Spanish explanations of TLS failures.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../shared/config.ts";
import { tlsFilePaths, withReadAccess } from "../../scripts/with_task_modules.ts";
import { withRootCert } from "../../server/stores/open.ts";
import { describeTlsFailure } from "../../client/connect_error.ts";
import { loadTlsMaterial, usesTls } from "../../client/tls.ts";
import { TlsSetupError } from "../../shared/pem_files.ts";

Deno.test("the server takes its TLS files from flags or environment, with a 10 s handshake deadline", () => {
  const config = loadConfig("servidor", {
    args: ["--tls-cert", "c.pem"],
    env: { COLMENA_TLS_KEY: "k.pem", COLMENA_TLS_CA_CLIENTES: "ca.pem", AMQP_CA_FILE: "r.pem" },
  });
  assert.equal(config.tlsCert, "c.pem");
  assert.equal(config.tlsKey, "k.pem");
  assert.equal(config.tlsCaClientes, "ca.pem");
  assert.equal(config.tlsHandshakeTimeoutMs, 10_000);
  assert.equal(config.amqpCa, "r.pem");
  assert.equal(loadConfig("servidor", { args: [], env: {} }).tlsCert, undefined);
});

Deno.test("a certificate without its key, or mutual TLS without TLS, is a configuration error", () => {
  assert.throws(
    () => loadConfig("servidor", { args: ["--tls-cert", "c.pem"], env: {} }),
    (err: unknown) => err instanceof ConfigError && /--tls-key/.test(err.message),
  );
  assert.throws(
    () => loadConfig("servidor", { args: ["--tls-ca-clientes", "ca.pem"], env: {} }),
    (err: unknown) => err instanceof ConfigError && /TLS mutuo necesita TLS/.test(err.message),
  );
  assert.throws(
    () => loadConfig("cliente", { args: ["--cert", "c.pem"], env: {} }),
    (err: unknown) => err instanceof ConfigError && /--key/.test(err.message),
  );
});

Deno.test("the client's --ca, --cert or --key imply TLS; COLMENA_TLS turns it on alone", () => {
  const fromEnv = loadConfig("cliente", { args: [], env: { COLMENA_TLS: "true" } });
  assert.equal(fromEnv.tls, true);
  assert.equal(usesTls({ tls: fromEnv.tls }), true);
  const withCa = loadConfig("cliente", { args: ["--ca", "ca.pem"], env: {} });
  assert.equal(withCa.tls, false);
  assert.equal(usesTls({ tls: withCa.tls, ca: withCa.ca }), true);
  assert.equal(usesTls({ tls: false }), false);
  assert.equal(loadConfig("worker", { args: ["--amqp-ca", "r.pem"], env: {} }).amqpCa, "r.pem");
});

Deno.test("the launcher finds the TLS files in the role's arguments, then in the environment", () => {
  assert.deepEqual(
    tlsFilePaths(["--tls-cert", "a.crt", "--tls-key=a.key", "--port", "1"], {
      COLMENA_TLS_CERT: "ignorado.crt",
      AMQP_CA_FILE: "rabbit.crt",
    }),
    ["a.crt", "a.key", "rabbit.crt"],
  );
  assert.deepEqual(tlsFilePaths(["--", "--tls-cert", "x"], {}), []);
});

Deno.test("the launcher adds each TLS file to the role's --allow-read, and nothing without them", () => {
  const command = ["deno", "run", "--allow-read=./data", "server.ts", "--tls-cert", "c/s.crt"];
  assert.deepEqual(
    withReadAccess(command, { modules: [], cwd: "/repo", files: ["c/s.crt", "/etc/k.key"] }),
    [
      "deno",
      "run",
      "--allow-read=./data,/repo/c/s.crt,/etc/k.key",
      "server.ts",
      "--tls-cert",
      "c/s.crt",
    ],
  );
  assert.deepEqual(withReadAccess(command, { modules: [], cwd: "/repo", files: [] }), command);
});

Deno.test("--database-ca becomes the URL's sslrootcert, unless the URL names one", () => {
  const url = withRootCert(
    "postgres://colmena:clave@db.example:5432/colmena?sslmode=verify-full",
    "/c/ca.crt",
  );
  const parsed = new URL(url);
  assert.equal(parsed.searchParams.get("sslrootcert"), "/c/ca.crt");
  assert.equal(parsed.searchParams.get("sslmode"), "verify-full");
  assert.equal(parsed.username, "colmena");
  assert.equal(parsed.host, "db.example:5432");
  const own = "postgres://h/db?sslrootcert=%2Fmine.crt";
  assert.equal(
    new URL(withRootCert(own, "/c/ca.crt")).searchParams.get("sslrootcert"),
    "/mine.crt",
  );
});

Deno.test("TLS failures are explained in Spanish, saying which option to fix", () => {
  const server = { host: "localhost", port: 8888 };
  const say = (message: string, clientCert = false) =>
    describeTlsFailure(new Error(message), server, { clientCert });
  assert.match(say("invalid peer certificate: UnknownIssuer") ?? "", /CA de confianza.*--ca/);
  assert.match(say("invalid peer certificate: NotValidForName") ?? "", /no vale para el nombre/);
  assert.match(say("received fatal alert: CertificateRequired") ?? "", /--cert y --key/);
  assert.match(
    say("peer closed connection without sending TLS close_notify", true) ?? "",
    /rechazó el certificado de cliente/,
  );
  assert.match(say("received corrupt message of type InvalidContentType") ?? "", /no habla TLS/);
  assert.equal(say("Connection reset by peer (os error 104)"), undefined);
  const reset = new Deno.errors.ConnectionReset("Connection reset by peer (os error 104)");
  assert.match(
    describeTlsFailure(reset, server, { beforeReply: true }) ?? "",
    /exige un certificado de cliente\? Indique --cert y --key/,
  );
  assert.match(
    describeTlsFailure(reset, server, { beforeReply: true, clientCert: true }) ?? "",
    /rechazó el certificado de cliente/,
  );
});

Deno.test("a CA that is not a file nor PEM text is a TlsSetupError naming the option", async () => {
  await assert.rejects(
    loadTlsMaterial({ ca: "/no/existe/ca.crt" }),
    (err: unknown) =>
      err instanceof TlsSetupError && /--ca/.test(err.message) && /no existe/.test(err.message),
  );
  const pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  assert.deepEqual(await loadTlsMaterial({ ca: pem }), { caCerts: [pem] });
});
