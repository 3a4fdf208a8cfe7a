/** Secrets in URLs and configuration are never shown: redaction with the URL parser, file variants, warnings. */
import assert from "node:assert/strict";
import { envNames, loadConfig } from "../../shared/config.ts";
import { redactUrl, registerSecrets, scrub, urlSecrets } from "../../shared/redact.ts";
import { readSecretFiles, secretFlagWarnings } from "../../shared/secrets.ts";
import { MessageSigner } from "../../shared/adapters/rabbitmq/signing.ts";

Deno.test("redactUrl keeps the host of a password that holds @ and hides the password", () => {
  const shown = redactUrl("amqp://guest:Wr0ngP@ss@rabbit.example:5672/vh");
  assert.equal(shown, "amqp://guest:***@rabbit.example:5672/vh");
  assert.ok(!shown.includes("Wr0ng") && !shown.includes("ss@"));
});

Deno.test("redactUrl hides password, sslpassword and token query values of a DATABASE_URL", () => {
  const shown = redactUrl(
    "postgres://u:s3cr3t@db:5432/colmena?password=otra&sslmode=require&sslpassword=k3y",
  );
  assert.equal(
    shown,
    "postgres://u:***@db:5432/colmena?password=***&sslmode=require&sslpassword=***",
  );
  assert.equal(redactUrl("no es una url"), "(URL no válida)");
});

Deno.test("urlSecrets lists the password as typed and decoded, and secret query values", () => {
  assert.deepEqual(urlSecrets("amqp://u:p%40ss@h/?x=1&password=q"), ["p%40ss", "p@ss", "q", "q"]);
});

Deno.test("a configuration error never echoes a secret value", () => {
  const err = (() => {
    try {
      loadConfig("servidor", {
        args: ["--database-url", "mysql://u:CANARIO-DB@h/db"],
        env: { AMQP_URL: "http://u:CANARIO-AMQP@h" },
      });
    } catch (e) {
      return e as Error;
    }
  })();
  assert.ok(err !== undefined);
  assert.ok(!err.message.includes("CANARIO"), err.message);
  assert.match(
    err.message,
    /--database-url debe empezar por postgres:\/\/, no «mysql:\/\/u:\*\*\*@h\/db»/,
  );
});

Deno.test("secrets are also read from <VARIABLE>_FILE once at start-up", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "amqp://u:de-fichero@h:5672\n");
    assert.ok(envNames("worker").includes("AMQP_URL_FILE"));
    assert.ok(envNames("servidor").includes("DATABASE_URL_FILE"));
    assert.ok(envNames("servidor").includes("AWS_SECRET_ACCESS_KEY_FILE"));
    const env = await readSecretFiles("worker", { AMQP_URL_FILE: path });
    assert.equal(loadConfig("worker", { args: [], env }).amqpUrl, "amqp://u:de-fichero@h:5672");
    await assert.rejects(
      readSecretFiles("worker", { AMQP_URL_FILE: path, AMQP_URL: "amqp://x" }),
      /AMQP_URL y AMQP_URL_FILE están definidas a la vez/,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("the signing key is taken from the environment only, never as a flag", () => {
  assert.throws(
    () => loadConfig("worker", { args: ["--clave-firma", "x".repeat(40)], env: {} }),
    /opción desconocida --clave-firma/,
  );
  const key = "k".repeat(40);
  assert.equal(
    loadConfig("worker", { args: [], env: { COLMENA_SIGNING_KEY: key } }).signingKey,
    key,
  );
});

Deno.test("a secret typed as a flag gets a warning naming the variable to use instead", () => {
  assert.deepEqual(secretFlagWarnings("servidor", ["--amqp-url", "amqp://127.0.0.1"]), []);
  const warnings = secretFlagWarnings("servidor", [
    "--amqp-url=amqp://u:p@h",
    "--aws-secret-access-key",
    "k",
  ]);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0]!, /--amqp-url .* use AMQP_URL o AMQP_URL_FILE/);
  assert.match(warnings[1]!, /use AWS_SECRET_ACCESS_KEY o AWS_SECRET_ACCESS_KEY_FILE/);
});

Deno.test("a signature covers the kind, the message id and every body byte", () => {
  const signer = new MessageSigner(new TextEncoder().encode("k".repeat(32)));
  const body = new TextEncoder().encode('{"a":1}');
  const signature = signer.sign("task", body, "id-1");
  assert.ok(signer.verify("task", body, { signature, messageId: "id-1" }));
  assert.ok(!signer.verify("results", body, { signature, messageId: "id-1" }));
  assert.ok(!signer.verify("task", body, { signature, messageId: "id-2" }));
  assert.ok(
    !signer.verify("task", new TextEncoder().encode('{"a":2}'), { signature, messageId: "id-1" }),
  );
  assert.ok(!signer.verify("task", body, { signature: undefined, messageId: "id-1" }));
  assert.ok(!signer.verify("task", body, { signature: "v1=AAAA", messageId: "id-1" }));
  assert.throws(() => new MessageSigner(new Uint8Array(16)), RangeError);
});

Deno.test("registered secrets are scrubbed from any text, the well-known guest password is not", () => {
  registerSecrets(["s3cr3t-del-registro", "guest"]);
  assert.equal(
    scrub("fallo: password s3cr3t-del-registro rechazada para guest"),
    "fallo: password *** rechazada para guest",
  );
});
