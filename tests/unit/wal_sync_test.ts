/**
 * The WAL sync of the SQLite store: requests made while a sync runs share the next one, deferred requests
 * ride on the next sync anyone starts (or start their own after their delay), and a failed sync rejects
 * what it served and opens the file again next time.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { WalSync } from "../../server/stores/wal_sync.ts";

/** A temporary folder with a database path whose `-wal` file exists (or not, with `withWal: false`). */
async function walFolder(withWal = true): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "colmena-wal-" });
  const path = join(dir, "colmena.db");
  if (withWal) await Deno.writeFile(`${path}-wal`, new Uint8Array(4096));
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("wal sync: a request made while a sync runs is served by the next one, shared by every such request", async () => {
  await using folder = await walFolder();
  const wal = new WalSync(folder.path);
  try {
    const first = wal.request();
    const second = wal.request();
    const third = wal.request();
    assert.notEqual(first, second, "the running sync may have started before the second request");
    assert.equal(second, third, "requests made during one sync share the next");
    await Promise.all([first, second, third]);
    // Nothing runs now: a new request starts a sync of its own.
    const fourth = wal.request();
    assert.notEqual(fourth, second);
    await fourth;
  } finally {
    await wal.close();
  }
});

Deno.test("wal sync: a deferred request is served by the next sync anyone starts, long before its delay", async () => {
  await using folder = await walFolder();
  const wal = new WalSync(folder.path);
  try {
    let served = false;
    const deferred = wal.deferred(60_000).then(() => {
      served = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(served, false, "no sync was started for it yet");
    await wal.request();
    await deferred;
    assert.equal(served, true);
  } finally {
    await wal.close();
  }
});

Deno.test("wal sync: a deferred request alone starts its own sync after its delay", async () => {
  await using folder = await walFolder();
  const wal = new WalSync(folder.path);
  try {
    const started = performance.now();
    await wal.deferred(30);
    assert.ok(performance.now() - started >= 25, "it waited for its delay");
  } finally {
    await wal.close();
  }
});

Deno.test("wal sync: a sync that cannot open the file rejects its requests, and the next one opens it again", async () => {
  await using folder = await walFolder(false);
  const wal = new WalSync(folder.path);
  try {
    await assert.rejects(wal.request(), Deno.errors.NotFound);
    await assert.rejects(wal.deferred(1), Deno.errors.NotFound);
    await Deno.writeFile(`${folder.path}-wal`, new Uint8Array(16));
    await wal.request();
  } finally {
    await wal.close();
  }
});

Deno.test("wal sync: closing serves the deferred requests first; requests after it reject", async () => {
  await using folder = await walFolder();
  const wal = new WalSync(folder.path);
  const deferred = wal.deferred(60_000);
  await wal.close();
  await deferred;
  await assert.rejects(wal.request(), /closed/);
  await assert.rejects(wal.deferred(1), /closed/);
});
