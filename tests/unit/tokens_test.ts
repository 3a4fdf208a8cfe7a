/**
 * Unit tests of access tokens: the tokens file keeps only hashes, the registry accepts exactly the tokens
 * whose hash it holds (compared in constant time), malformed files are refused with the line named, repeated
 * failures from one address wait longer and longer, and only loopback counts as loopback.
 *
 * @module
 */
import assert from "node:assert/strict";
import { FailureThrottle, TokenRegistry } from "../../server/tokens.ts";
import { isLoopback } from "../../server/protected_mode.ts";
import {
  formatTokenEntry,
  hashToken,
  newToken,
  parseTokenFile,
  TOKEN_PATTERN,
  TokenFileError,
} from "../../shared/tokens.ts";

Deno.test("a new token is random, well-formed, and its entry holds only its SHA-256", () => {
  const { token, entry } = newToken("ana", { role: "cliente", types: ["echo"] });
  const other = newToken("ana", { role: "cliente" });
  assert.match(token, TOKEN_PATTERN);
  assert.notEqual(token, other.token);
  const line = formatTokenEntry(entry);
  assert.equal(line.includes(token), false);
  assert.equal(line.includes(token.slice(17)), false, "not even the secret part");
  assert.equal(entry.sha256, hashToken(token));
  assert.deepEqual(parseTokenFile(line, "t.jsonl"), [entry]);
});

Deno.test("the registry gives a good token its principal and refuses a wrong, unknown or malformed one", () => {
  const ana = newToken("ana", { role: "cliente", types: ["echo"] });
  const root = newToken("root", { role: "admin" });
  const registry = new TokenRegistry([ana.entry, root.entry]);
  assert.deepEqual(registry.verify(ana.token), { name: "ana", role: "cliente", types: ["echo"] });
  assert.deepEqual(registry.verify(root.token), { name: "root", role: "admin" });
  // Same public id, one character of the secret changed.
  const last = ana.token.at(-1) === "A" ? "B" : "A";
  assert.equal(registry.verify(ana.token.slice(0, -1) + last), undefined);
  // A well-formed token whose id is unknown.
  assert.equal(registry.verify(newToken("ana", { role: "admin" }).token), undefined);
  assert.equal(registry.verify("clm_nada"), undefined);
  assert.equal(registry.verify(undefined), undefined);
  // The hash, presented as a token, is not a token.
  assert.equal(registry.verify(ana.entry.sha256), undefined);
});

Deno.test("a malformed tokens file is refused in Spanish with its line", () => {
  const good = formatTokenEntry(newToken("ana", { role: "cliente" }).entry);
  assert.throws(() => parseTokenFile(`${good}{no es json\n`, "t.jsonl"), (err: unknown) => {
    assert.ok(err instanceof TokenFileError);
    assert.match(err.message, /t\.jsonl, línea 2 no es JSON válido/);
    return true;
  });
  const entry = JSON.parse(good);
  assert.throws(
    () => parseTokenFile(JSON.stringify({ ...entry, role: "dios" }), "t.jsonl"),
    /línea 1 no es una entrada válida \(revise: role\)/,
  );
  assert.throws(
    () => parseTokenFile(JSON.stringify({ ...entry, token: "clm_x" }), "t.jsonl"),
    TokenFileError,
    "an entry that holds anything else (a token in clear) is refused",
  );
  assert.throws(() => parseTokenFile(good + good, "t.jsonl"), /línea 2 repite el id/);
  assert.deepEqual(parseTokenFile("# comentario\n\n", "t.jsonl"), []);
});

Deno.test("repeated failures from one address wait longer each time, up to a cap; others do not", () => {
  const throttle = new FailureThrottle(100, 1_000);
  const waits = [1, 2, 3, 4, 5, 6].map(() => throttle.failed("10.0.0.1", 0));
  assert.deepEqual(waits, [0, 100, 200, 400, 800, 1_000]);
  assert.equal(throttle.failed("10.0.0.2", 0), 0);
  // Forgotten after ten minutes without a failure.
  assert.equal(throttle.failed("10.0.0.1", 11 * 60_000), 0);
});

Deno.test("only loopback names and addresses count as loopback", () => {
  for (const host of ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"]) {
    assert.equal(isLoopback(host), true, host);
  }
  for (const host of ["0.0.0.0", "::", "192.168.1.10", "example.com", "127.0.0.1.example.com"]) {
    assert.equal(isLoopback(host), false, host);
  }
});
