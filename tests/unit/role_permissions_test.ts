/** The launcher narrows each role's permissions to what its configuration names. */
import assert from "node:assert/strict";
import { loadConfig } from "../../shared/config.ts";
import { netAllowList, secretFiles } from "../../scripts/role_permissions.ts";
import { withRolePermissions } from "../../scripts/with_task_modules.ts";

Deno.test("the worker's --allow-net names RabbitMQ and the S3 endpoint only", () => {
  const config = loadConfig("worker", {
    args: [],
    env: {
      AMQP_URL: "amqps://u:p@rabbit.interna",
      S3_BUCKET: "colmena",
      S3_ENDPOINT: "http://minio:9000",
    },
  });
  assert.deepEqual(netAllowList("worker", config), ["rabbit.interna:5671", "minio:9000"]);
});

Deno.test("the server's --allow-net names its listeners, RabbitMQ and PostgreSQL", () => {
  const config = loadConfig("servidor", {
    args: ["--host", "0.0.0.0", "--port", "9999", "--http", "[::1]:8081"],
    env: { DATABASE_URL: "postgres://c:x@db/colmena?password=y" },
  });
  assert.deepEqual(netAllowList("servidor", config), [
    "127.0.0.1:5672",
    "0.0.0.0:9999",
    "[::1]:8081",
    "db:5432",
  ]);
});

Deno.test("hosts that cannot be known in advance keep a plain --allow-net", () => {
  const aws = loadConfig("worker", { args: [], env: { S3_BUCKET: "colmena" } });
  assert.equal(netAllowList("worker", aws), undefined);
  const socket = loadConfig("servidor", {
    args: [],
    env: { DATABASE_URL: "postgres:///colmena?host=/var/run/postgresql" },
  });
  assert.equal(netAllowList("servidor", socket), undefined);
});

Deno.test("the launcher replaces --allow-net, adds secret files and moves the blob folder", () => {
  const command = [
    "deno",
    "run",
    "--allow-net",
    "--allow-read=./data/blobs,./worker",
    "--allow-write=./data/blobs",
    "worker.ts",
  ];
  assert.deepEqual(
    withRolePermissions(command, {
      net: ["127.0.0.1:5672"],
      reads: ["/run/secrets/clave"],
      blobFolder: "/srv/colmena/blobs",
    }),
    [
      "deno",
      "run",
      "--allow-net=127.0.0.1:5672",
      "--allow-read=/srv/colmena/blobs,./worker,/run/secrets/clave",
      "--allow-write=/srv/colmena/blobs",
      "worker.ts",
    ],
  );
  assert.deepEqual(
    secretFiles({ signingKeyFile: "/k" }, { AMQP_URL_FILE: "/a", OTHER: "/x" }, ["AMQP_URL_FILE"]),
    ["/a", "/k"],
  );
});
