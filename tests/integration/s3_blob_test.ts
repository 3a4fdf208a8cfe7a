/**
 * The S3 blob store against a real S3-compatible server (`S3_ENDPOINT`, or the local s3rver of
 * tests/_helpers/s3_server.ts): the shared `BlobStore` conformance suite, bucket creation and the
 * translation of failures.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ColmenaError } from "../../shared/errors.ts";
import { openS3BlobStore, type S3BlobStoreOptions } from "../../shared/adapters/s3.ts";
import { blobConformance } from "../conformance/blob_store.ts";
import { needsS3, type S3Target, s3Target } from "../_helpers/services.ts";

const s3 = await needsS3();
const probed = s3.ignore ? undefined : await s3Target();
const target: S3Target | undefined = probed instanceof Error ? undefined : probed;

/** Options for the test server, with a key prefix unique to this store. */
function options(extra: Partial<S3BlobStoreOptions> = {}): S3BlobStoreOptions {
  assert.ok(target !== undefined);
  return {
    endpoint: target.endpoint,
    region: target.region,
    bucket: target.bucket,
    credentials: target.credentials,
    prefix: `test/${crypto.randomUUID()}`,
    ...extra,
  };
}

blobConformance("s3 blobs", async () => {
  const store = await openS3BlobStore(options());
  return {
    store,
    async [Symbol.asyncDispose]() {
      await store.close();
    },
  };
}, { ...s3, atomicOverwrites: target?.local !== true });

Deno.test({
  name: "s3 blobs: opening creates a missing bucket, and opening it again is harmless",
  ...s3,
}, async () => {
  const bucket = `colmena-test-${crypto.randomUUID().slice(0, 8)}`;
  const first = await openS3BlobStore(options({ bucket }));
  try {
    await first.put("tasks/b/payload", new TextEncoder().encode("en el cubo nuevo"));
    const second = await openS3BlobStore(options({ bucket, prefix: first.prefix }));
    try {
      assert.equal(
        new TextDecoder().decode(await second.get("tasks/b/payload")),
        "en el cubo nuevo",
      );
    } finally {
      await second.close();
    }
    await first.delete(["tasks/b/payload"]);
  } finally {
    await first.close();
  }
});

Deno.test({
  name: "s3 blobs: credentials the server does not know are INTERNAL, not BLOB_UNAVAILABLE",
  ...s3,
}, async () => {
  const wrong = { accessKeyId: "NADIE", secretAccessKey: "no-es-la-clave" };
  await assert.rejects(() => openS3BlobStore(options({ credentials: wrong })), (err: unknown) => {
    assert.ok(err instanceof ColmenaError);
    assert.equal(err.code, "INTERNAL");
    assert.ok(err.cause instanceof Error);
    return true;
  });
});

Deno.test("s3 blobs: an unreachable server rejects with BLOB_UNAVAILABLE, keeping the SDK error", async () => {
  // A port that was free a moment ago: nothing listens there.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  await assert.rejects(
    () =>
      openS3BlobStore({
        endpoint: `http://127.0.0.1:${port}`,
        bucket: "colmena-test",
        credentials: { accessKeyId: "x", secretAccessKey: "y" },
        maxAttempts: 1,
      }),
    (err: unknown) => {
      assert.ok(err instanceof ColmenaError);
      assert.equal(err.code, "BLOB_UNAVAILABLE");
      assert.equal(err.retryable, true);
      assert.equal(err.message, "El almacén de objetos no está disponible; inténtelo de nuevo");
      assert.ok(err.cause instanceof Error);
      return true;
    },
  );
});

Deno.test("s3 blobs: a 503 answer becomes BLOB_UNAVAILABLE, and a missing object NOT_FOUND", async () => {
  // An S3 endpoint that has no objects and is overloaded for writes, to produce both answers on demand.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    if (request.method === "HEAD") return new Response(null, { status: 200 });
    if (request.method === "GET") {
      return new Response(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no</Message></Error>',
        { status: 404, headers: { "content-type": "application/xml" } },
      );
    }
    return new Response(
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>despacio</Message></Error>',
      { status: 503, headers: { "content-type": "application/xml" } },
    );
  });
  try {
    const store = await openS3BlobStore({
      endpoint: `http://127.0.0.1:${server.addr.port}`,
      bucket: "colmena-test",
      credentials: { accessKeyId: "x", secretAccessKey: "y" },
      maxAttempts: 1,
    });
    try {
      await assert.rejects(
        () => store.put("tasks/p/payload", new Uint8Array(10)),
        (err: unknown) => {
          assert.ok(err instanceof ColmenaError);
          assert.equal(err.code, "BLOB_UNAVAILABLE");
          assert.equal((err.cause as Error).name, "SlowDown");
          return true;
        },
      );
      await assert.rejects(() => store.get("tasks/p/payload"), (err: unknown) => {
        assert.ok(err instanceof ColmenaError);
        assert.equal(err.code, "NOT_FOUND");
        return true;
      });
    } finally {
      await store.close();
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("s3 blobs: a stalled server is cut off as BLOB_UNAVAILABLE, before and during a transfer", async () => {
  // Answers HEAD at once, never answers PUT, and sends 10 of the 100 bytes of a GET, then nothing.
  const release = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    if (request.method === "HEAD") return new Response(null, { status: 200 });
    if (request.method === "GET") {
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(new Uint8Array(10));
          await release.promise;
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-length": "100" } });
    }
    await request.body?.cancel();
    await release.promise;
    return new Response(null, { status: 500 });
  });
  const isUnavailable = (err: unknown) => {
    assert.ok(err instanceof ColmenaError);
    assert.equal(err.code, "BLOB_UNAVAILABLE");
    return true;
  };
  try {
    const store = await openS3BlobStore({
      endpoint: `http://127.0.0.1:${server.addr.port}`,
      bucket: "colmena-test",
      credentials: { accessKeyId: "x", secretAccessKey: "y" },
      maxAttempts: 1,
      requestTimeoutMs: 200,
      idleTimeoutMs: 200,
    });
    try {
      await assert.rejects(() => store.put("tasks/s/payload", new Uint8Array(10)), isUnavailable);
      await assert.rejects(
        () => store.put("tasks/s/payload", ReadableStream.from([new Uint8Array(10)])),
        isUnavailable,
      );
      await assert.rejects(() => store.delete(["tasks/s/payload"]), isUnavailable);
      await assert.rejects(() => store.get("tasks/s/payload"), isUnavailable);
      const reader = (await store.stream("tasks/s/payload")).getReader();
      await assert.rejects(async () => {
        while (!(await reader.read()).done);
      }, isUnavailable);
    } finally {
      await store.close();
    }
  } finally {
    release.resolve();
    await server.shutdown();
  }
});

Deno.test({
  name: "s3 blobs: a slow source stream is not taken for a stalled server",
  ...s3,
}, async () => {
  const store = await openS3BlobStore(options({ idleTimeoutMs: 150 }));
  try {
    let sent = 0;
    const slow = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 3) return controller.close();
        await new Promise((resolve) => setTimeout(resolve, 300));
        controller.enqueue(new TextEncoder().encode(`trozo ${++sent};`));
      },
    });
    await store.put("tasks/slow/payload", slow);
    assert.equal(
      new TextDecoder().decode(await store.get("tasks/slow/payload")),
      "trozo 1;trozo 2;trozo 3;",
    );
    await store.delete(["tasks/slow/payload"]);
  } finally {
    await store.close();
  }
});
