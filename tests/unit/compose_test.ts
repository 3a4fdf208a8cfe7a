/**
 * compose.yaml exposes only the client port (the panels on 127.0.0.1), pins every image, takes every
 * credential from `.env` (none is `guest` or written in the file), and RabbitMQ gives each role its own user
 * in the `colmena` vhost with the permissions docs/seguridad.md describes.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";

const ROOT = new URL("../../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

interface Service {
  image?: string;
  ports?: (string | number)[];
  environment?: Record<string, string>;
  entrypoint?: string[];
  volumes?: string[];
}

const compose = parse(await read("compose.yaml"), { merge: true }) as {
  services: Record<string, Service>;
};
const services = compose.services;
const definitions = JSON.parse(await read("deploy/rabbitmq/definitions.template.json")) as {
  vhosts: { name: string }[];
  users: { name: string; password: string; tags: string[] }[];
  permissions: { user: string; vhost: string; configure: string; write: string; read: string }[];
};
const envExample = await read(".env.example");

/** The names `.env.example` defines. */
const defined = new Set(
  envExample.split("\n").filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.slice(0, l.indexOf("="))),
);

Deno.test("compose publishes the client port on every interface and the panels on 127.0.0.1 only", () => {
  const published: string[] = [];
  for (const [name, service] of Object.entries(services)) {
    for (const port of service.ports ?? []) {
      const text = String(port);
      published.push(`${name} ${text}`);
      if (name === "haproxy" && text === "8888:8888") continue;
      assert.match(text, /^127\.0\.0\.1:\d+:\d+$/, `${name} publishes ${text} beyond loopback`);
    }
  }
  assert.deepEqual(published.sort(), [
    "haproxy 127.0.0.1:8404:8404",
    "haproxy 8888:8888",
    "minio 127.0.0.1:9001:9001",
    "rabbitmq 127.0.0.1:15672:15672",
  ]);
});

Deno.test("compose pins every image to a version", () => {
  for (const [name, service] of Object.entries(services)) {
    const image = service.image ?? "";
    const tag = image.includes("@sha256:") ? "digest" : image.split(":")[1] ?? "";
    assert.ok(tag !== "" && tag !== "latest" && /\d/.test(tag), `${name}: ${image} is not pinned`);
    if (image.startsWith("rabbitmq:") || image.startsWith("postgres:")) {
      assert.match(tag, /^\d+\.\d+/, `${name}: ${image} names a major version only`);
    }
  }
});

Deno.test("compose has no guest credentials and takes every secret from .env", async () => {
  const text = JSON.stringify(services);
  assert.doesNotMatch(text, /guest/i);
  for (const [name, service] of Object.entries(services)) {
    for (const [key, value] of Object.entries(service.environment ?? {})) {
      const secret = /PASSWORD|SECRET|SIGNING_KEY|_URL$/.test(key);
      if (!secret) continue;
      if (/_URL$/.test(key) && !/:\/\/[^@]*:[^@]*@/.test(value)) continue;
      assert.match(value, /\$\{[A-Z_]+/, `${name}.${key} holds a literal secret`);
    }
  }
  const used = [...JSON.stringify(compose).matchAll(/\$\{([A-Z_]+)/g)].map((m) => m[1]!);
  assert.ok(used.length > 0);
  for (const name of new Set(used)) {
    assert.ok(defined.has(name), `${name} is used in compose.yaml but not in .env.example`);
  }
  const gitignore = (await Deno.readTextFile(new URL(".gitignore", ROOT))).split("\n");
  assert.ok(gitignore.includes(".env"), ".env must be ignored by git");
});

Deno.test("each role reaches RabbitMQ as its own user in the colmena vhost", () => {
  for (const server of ["servidor1", "servidor2"]) {
    assert.match(
      services[server]?.environment?.AMQP_URL ?? "",
      /^amqp:\/\/colmena-servidor:\$\{[A-Z_]+\}@rabbitmq:5672\/colmena$/,
    );
  }
  for (const worker of ["worker"]) {
    assert.match(
      services[worker]?.environment?.AMQP_URL ?? "",
      /^amqp:\/\/colmena-worker:\$\{[A-Z_]+\}@rabbitmq:5672\/colmena$/,
    );
  }
  assert.deepEqual(definitions.vhosts.map((v) => v.name), ["colmena"]);
  assert.deepEqual(definitions.users.map((u) => u.name).sort(), [
    "admin",
    "colmena-servidor",
    "colmena-worker",
  ]);
  for (const user of definitions.users) {
    assert.match(user.password, /^__[A-Z_]+__$/, `${user.name}'s password is not a placeholder`);
    assert.ok(defined.has(user.password.slice(2, -2)), `${user.password} is not in .env.example`);
  }
});

function permissionsOf(user: string) {
  const found = definitions.permissions.find((p) => p.user === user && p.vhost === "colmena");
  assert.ok(found, `${user} has no permissions in the colmena vhost`);
  return {
    configure: new RegExp(found.configure),
    write: new RegExp(found.write),
    read: new RegExp(found.read),
  };
}

Deno.test("the server may consume results, its reply queue, its heartbeat queue and the dead-letter queue", () => {
  const server = permissionsOf("colmena-servidor");
  for (
    const queue of ["result_queue", "result_queue.server.srv-1", "task_queue.dlq", "amq.gen-x"]
  ) {
    assert.match(queue, server.read, `the server cannot read ${queue}`);
  }
  // RabbitMQ asks for read on a queue declared with a dead-letter exchange, as the type queues are.
  assert.match("task_queue.echo", server.read);
  for (const name of ["amq.default", "task_queue.control", "result_queue.replies"]) {
    assert.match(name, server.write, `the server cannot publish to ${name}`);
  }
  assert.match("task_queue.echo", server.configure);
  for (const other of ["otra_app.cola", "amq.default"]) {
    assert.doesNotMatch(other, server.configure);
    assert.doesNotMatch(other, server.read);
  }
});

Deno.test("the worker may consume task queues and cancels, never results nor the dead-letter queue", () => {
  const worker = permissionsOf("colmena-worker");
  for (const queue of ["task_queue.echo", "task_queue.control.cancels", "task_queue.control"]) {
    assert.match(queue, worker.read, `the worker cannot read ${queue}`);
  }
  for (
    const queue of ["result_queue", "result_queue.server.srv-1", "task_queue.dlq", "amq.gen-x"]
  ) {
    assert.doesNotMatch(queue, worker.read, `the worker may consume ${queue}`);
  }
  for (const name of ["amq.default", "result_queue.heartbeats", "task_queue.control.cancels"]) {
    assert.match(name, worker.write, `the worker cannot publish to ${name}`);
  }
  assert.doesNotMatch("amq.gen-x", worker.configure);
});

Deno.test("RabbitMQ loads the definitions at boot and keeps guest on loopback", async () => {
  const conf = await read("deploy/rabbitmq/rabbitmq.conf");
  const entry = await read("deploy/rabbitmq/entrypoint.sh");
  const target = conf.match(/^load_definitions = (\S+)$/m)?.[1];
  assert.ok(target !== undefined, "rabbitmq.conf loads no definitions");
  assert.ok(entry.includes(`>${target}`), `entrypoint.sh does not write ${target}`);
  assert.match(conf, /^loopback_users\.guest = true$/m);
  const rabbit = services.rabbitmq!;
  assert.deepEqual(rabbit.entrypoint, ["/etc/colmena/entrypoint.sh"]);
  assert.ok(rabbit.volumes?.some((v) => v.endsWith(":/etc/rabbitmq/conf.d/90-colmena.conf:ro")));
});

/** Debian's `docker-compose` (installed by .ci/run) validates the file without a Docker engine. */
async function dockerCompose(args: string[]): Promise<Deno.CommandOutput | undefined> {
  try {
    return await new Deno.Command("docker-compose", {
      args,
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
      clearEnv: true,
    }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

const hasDockerCompose = (await dockerCompose(["version"])) !== undefined;
if (!hasDockerCompose && Deno.env.get("CI") === "true") {
  throw new Error("docker-compose is missing and CI=true: .ci/run installs it");
}

Deno.test({
  name: "docker-compose config accepts compose.yaml with .env.example, and refuses it without .env",
  ignore: !hasDockerCompose,
  async fn() {
    const ok = await dockerCompose([
      "--env-file",
      ".env.example",
      "-f",
      "compose.yaml",
      "config",
      "-q",
    ]);
    assert.equal(ok?.code, 0, new TextDecoder().decode(ok?.stderr));
    const empty = await Deno.makeTempFile({ prefix: "colmena-env-" });
    try {
      const missing = await dockerCompose([
        "--env-file",
        empty,
        "-f",
        "compose.yaml",
        "config",
        "-q",
      ]);
      assert.notEqual(missing?.code, 0);
      assert.match(new TextDecoder().decode(missing?.stderr), /defina/);
    } finally {
      await Deno.remove(empty);
    }
  },
});

Deno.test("compose puts HAProxy with deploy/haproxy.cfg before two servers, scales workers, runs Deno as a non-root user with a shared cache", () => {
  const haproxy = services.haproxy as Service & { environment: Record<string, string> };
  assert.ok(
    haproxy.volumes?.includes("./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"),
  );
  assert.equal(haproxy.environment.COLMENA_SERVIDOR_1, "servidor1:8888");
  assert.equal(haproxy.environment.COLMENA_SERVIDOR_2, "servidor2:8888");
  for (const name of ["servidor1", "servidor2"]) {
    const server = services[name] as Service & { command: string[]; user?: string };
    const args = server.command;
    // Its id, HTTP for /readyz on the port HAProxy checks, tokens (protected mode) and a drain delay.
    assert.equal(args[args.indexOf("--server-id") + 1], name);
    assert.equal(args[args.indexOf("--http") + 1], `0.0.0.0:${haproxy.environment.COLMENA_HTTP_1}`);
    assert.ok(args.includes("--tokens") && args.includes("--drain-delay-ms"));
    assert.equal(server.user, "deno");
    assert.ok(server.volumes?.includes("deno-cache:/deno-dir"));
  }
  const worker = services.worker as Service & { user?: string; container_name?: string };
  assert.equal(worker.user, "deno");
  assert.equal(worker.container_name, undefined, "a fixed container name would stop --scale");
  assert.ok(worker.volumes?.includes("deno-cache:/deno-dir"));
});
