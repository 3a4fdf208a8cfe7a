/**
 * The folder blob store: the shared `BlobStore` conformance suite plus what only a folder can show (paths,
 * temporary files, empty folders).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type FolderBlobStore, openFolderBlobStore } from "../../shared/adapters/fs_blob.ts";
import { ColmenaError } from "../../shared/errors.ts";
import { blobConformance } from "../conformance/blob_store.ts";

const encoder = new TextEncoder();

/** A folder store on a new temporary folder, removed on dispose. */
async function tempStore(): Promise<{ store: FolderBlobStore; dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "colmena-blobs-" });
  const store = await openFolderBlobStore(join(dir, "blobs"));
  return {
    store,
    dir,
    async [Symbol.asyncDispose]() {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function listTree(root: string, prefix = ""): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(join(root, prefix))) {
    const path = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory) names.push(`${path}/`, ...await listTree(root, path));
    else names.push(path);
  }
  return names.sort();
}

blobConformance("folder blobs", tempStore);

Deno.test("folder blobs: `../escape` keys are rejected and nothing is written outside the folder", async () => {
  await using fixture = await tempStore();
  const { store, dir } = fixture;
  for (const key of ["../escape", "../../escape", "tasks/../../escape", "/tmp/escape"]) {
    await assert.rejects(() => store.put(key, encoder.encode("fuera")), TypeError, key);
  }
  assert.deepEqual(await listTree(dir), ["blobs/"]);
});

Deno.test("folder blobs: a key is the file of the same relative path, with no temporary file left", async () => {
  await using fixture = await tempStore();
  const { store } = fixture;
  await store.put("tasks/0b7e/payload", encoder.encode("datos"));
  await store.put("tasks/0b7e/payload", ReadableStream.from([encoder.encode("otros datos")]));
  assert.deepEqual(await listTree(store.root), ["tasks/", "tasks/0b7e/", "tasks/0b7e/payload"]);
  assert.equal(
    await Deno.readTextFile(join(store.root, "tasks", "0b7e", "payload")),
    "otros datos",
  );
});

Deno.test("folder blobs: a failed put removes its temporary file", async () => {
  await using fixture = await tempStore();
  const { store } = fixture;
  const failing = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode("a medias"));
      controller.error(new Error("cortado"));
    },
  });
  await assert.rejects(() => store.put("tasks/t/payload", failing), /cortado/);
  assert.deepEqual(
    (await listTree(store.root)).filter((path) => !path.endsWith("/")),
    [],
  );
});

Deno.test("folder blobs: deleting the last objects of a folder removes the folders left empty", async () => {
  await using fixture = await tempStore();
  const { store } = fixture;
  await store.put("tasks/a/payload", encoder.encode("1"));
  await store.put("tasks/a/output", encoder.encode("2"));
  await store.put("tasks/b/payload", encoder.encode("3"));
  await store.delete(["tasks/a/payload", "tasks/a/output"]);
  assert.deepEqual(await listTree(store.root), ["tasks/", "tasks/b/", "tasks/b/payload"]);
  await store.delete(["tasks/b/payload"]);
  assert.deepEqual(await listTree(store.root), []);
  // The root itself stays, and takes new objects.
  await store.put("tasks/c/payload", encoder.encode("4"));
  assert.equal(new TextDecoder().decode(await store.get("tasks/c/payload")), "4");
});

Deno.test("folder blobs: a key through another object is a TypeError, and a folder is no object", async () => {
  await using fixture = await tempStore();
  const { store } = fixture;
  await store.put("tasks/x", encoder.encode("objeto"));
  await assert.rejects(() => store.put("tasks/x/payload", encoder.encode("y")), TypeError);
  await store.put("files/y/payload", encoder.encode("z"));
  await assert.rejects(() => store.put("files/y", encoder.encode("w")), TypeError);
  // Deleting a "folder" key deletes nothing.
  await store.delete(["files/y"]);
  assert.equal(new TextDecoder().decode(await store.get("files/y/payload")), "z");
});

Deno.test("folder blobs: close errors the streams still open", async () => {
  await using fixture = await tempStore();
  const { store } = fixture;
  await store.put("tasks/s/payload", new Uint8Array(256 * 1024));
  const reader = (await store.stream("tasks/s/payload")).getReader();
  await reader.read();
  await store.close();
  await assert.rejects(async () => {
    while (!(await reader.read()).done);
  }, /closed/);
});

/** Rejects unless `promise` rejects with a `ColmenaError` of `code`. */
async function assertCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ColmenaError, `expected ColmenaError, got ${err}`);
    assert.equal(err.code, code, String(err));
    return true;
  });
}

// A root replaced by a regular file fails every call with ENOTDIR, also for root, which bypasses permission
// bits (chmod 0500 would not fail here): the tests run as root.
Deno.test("folder blobs: a root that is no longer a folder gives BLOB_UNAVAILABLE, never INTERNAL or NOT_FOUND", async () => {
  await using fixture = await tempStore();
  const { store } = fixture;
  await store.put("tasks/r/payload", encoder.encode("datos"));
  await Deno.remove(store.root, { recursive: true });
  await Deno.writeTextFile(store.root, "no soy una carpeta");
  await assertCode(store.put("uploads/u", encoder.encode("x")), "BLOB_UNAVAILABLE");
  await assertCode(
    store.put("uploads/v", ReadableStream.from([encoder.encode("x")])),
    "BLOB_UNAVAILABLE",
  );
  await assertCode(store.get("tasks/r/payload"), "BLOB_UNAVAILABLE");
  await assertCode(store.stream("tasks/r/payload"), "BLOB_UNAVAILABLE");
  await assertCode(Array.fromAsync(store.list("uploads/")), "BLOB_UNAVAILABLE");
  await assert.rejects(store.get("tasks/r/payload"), (err: unknown) => {
    assert.ok(err instanceof ColmenaError && err.cause instanceof Deno.errors.NotADirectory);
    return true;
  });
  await Deno.remove(store.root);
});

Deno.test("folder blobs: a read with the root folder gone is BLOB_UNAVAILABLE; a missing key under it is NOT_FOUND", async () => {
  await using fixture = await tempStore();
  const { store } = fixture;
  await assertCode(store.get("tasks/nada/payload"), "NOT_FOUND");
  await assertCode(store.stream("tasks/nada/payload"), "NOT_FOUND");
  await Deno.remove(store.root, { recursive: true });
  await assertCode(store.get("tasks/nada/payload"), "BLOB_UNAVAILABLE");
  await assertCode(store.stream("tasks/nada/payload"), "BLOB_UNAVAILABLE");
});

/** Whether `chattr +i` works on `dir` (root with CAP_LINUX_IMMUTABLE, and a file system that supports it). */
async function canMakeImmutable(dir: string): Promise<boolean> {
  try {
    const set = await new Deno.Command("chattr", { args: ["+i", dir], stderr: "null" }).output();
    if (!set.success) return false;
    await new Deno.Command("chattr", { args: ["-i", dir] }).output();
    return true;
  } catch {
    return false;
  }
}

const probeDir = await Deno.makeTempDir({ prefix: "colmena-chattr-" });
const immutable = await canMakeImmutable(probeDir);
await Deno.remove(probeDir);

// An immutable folder refuses new entries even to root (EPERM): the closest a test run as root gets to a
// folder it may not write, or a read-only file system.
Deno.test({
  name:
    "folder blobs: a root folder that refuses writes gives BLOB_UNAVAILABLE on put; reads still work",
  ignore: !immutable,
  async fn() {
    await using fixture = await tempStore();
    const { store } = fixture;
    await store.put("tasks/i/payload", encoder.encode("datos"));
    await new Deno.Command("chattr", { args: ["+i", store.root] }).output();
    try {
      await assertCode(store.put("uploads/u", encoder.encode("x")), "BLOB_UNAVAILABLE");
      await assertCode(
        store.put("uploads/w", ReadableStream.from([encoder.encode("x")])),
        "BLOB_UNAVAILABLE",
      );
      assert.equal(new TextDecoder().decode(await store.get("tasks/i/payload")), "datos");
      await assertCode(store.get("uploads/u"), "NOT_FOUND");
    } finally {
      await new Deno.Command("chattr", { args: ["-i", store.root] }).output();
    }
  },
});
