/**
 * Unit tests of `shared/config.ts`: `loadConfig` is pure, so every test passes plain args and env objects.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ConfigError, envNames, loadConfig, type Role } from "../../shared/config.ts";

/** Asserts `loadConfig` throws a `ConfigError` and returns its message. */
function configError(
  role: Role,
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): string {
  try {
    loadConfig(role, { args, env });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.equal(err.name, "ConfigError");
    return err.message;
  }
  assert.fail("expected loadConfig to throw ConfigError");
}

Deno.test({
  name: "loadConfig never reads Deno.env: it works without env permission",
  permissions: { env: false },
  fn() {
    const config = loadConfig("servidor", { args: [], env: {} });
    assert.equal(config.port, 8888);
  },
});

Deno.test("loadConfig gives the servidor loopback defaults", () => {
  const config = loadConfig("servidor", { args: [], env: {} });
  assert.equal(config.host, "localhost");
  assert.equal(config.port, 8888);
  assert.equal(config.amqpUrl, "amqp://guest:guest@127.0.0.1:5672");
  assert.equal(config.taskQueue, "task_queue");
  assert.equal(config.resultQueue, "result_queue");
  assert.equal(config.serverId, undefined);
  assert.equal(config.maxLineBytes, 1024 * 1024);
  assert.equal(config.maxJsonDepth, 64);
  assert.deepEqual(config.positionals, []);
});

Deno.test("loadConfig gives the worker defaults", () => {
  const config = loadConfig("worker", { args: [], env: {} });
  assert.equal(config.name, undefined);
  assert.equal(config.amqpUrl, "amqp://guest:guest@127.0.0.1:5672");
  assert.equal(config.taskQueue, "task_queue");
  assert.equal(config.resultQueue, "result_queue");
  assert.equal(config.concurrency, 100);
  assert.equal(config.quiet, false);
});

Deno.test("loadConfig gives the cliente defaults: localhost:8888", () => {
  const config = loadConfig("cliente", { args: [], env: {} });
  assert.equal(config.host, "localhost");
  assert.equal(config.port, 8888);
  assert.equal(config.kind, "cli");
  assert.equal(config.json, false);
});

Deno.test("loadConfig takes an environment variable over the default", () => {
  const config = loadConfig("servidor", {
    args: [],
    env: {
      COLMENA_HOST: "0.0.0.0",
      COLMENA_PORT: "9000",
      AMQP_URL: "amqps://u:p@rabbit:5671/vh",
      COLMENA_TASK_QUEUE: "tq",
      COLMENA_RESULT_QUEUE: "rq",
    },
  });
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.port, 9000);
  assert.equal(config.amqpUrl, "amqps://u:p@rabbit:5671/vh");
  assert.equal(config.taskQueue, "tq");
  assert.equal(config.resultQueue, "rq");
});

Deno.test("loadConfig takes a flag over the environment variable", () => {
  const env = { COLMENA_PORT: "9000", AMQP_URL: "amqp://env:5672" };
  const long = loadConfig("servidor", {
    args: ["--port", "9100", "--amqp-url=amqp://flag:5672"],
    env,
  });
  assert.equal(long.port, 9100);
  assert.equal(long.amqpUrl, "amqp://flag:5672");
  const short = loadConfig("cliente", { args: ["-p", "9200"], env });
  assert.equal(short.port, 9200);
});

Deno.test("loadConfig treats an empty or undefined environment variable as unset", () => {
  const config = loadConfig("servidor", {
    args: [],
    env: { COLMENA_PORT: "", COLMENA_HOST: undefined },
  });
  assert.equal(config.port, 8888);
  assert.equal(config.host, "localhost");
});

Deno.test("loadConfig accepts port 0 to pick a free port", () => {
  assert.equal(loadConfig("servidor", { args: ["--port", "0"], env: {} }).port, 0);
});

Deno.test("loadConfig takes the worker name from the first positional argument", () => {
  const config = loadConfig("worker", { args: ["obrera-1", "extra"], env: {} });
  assert.equal(config.name, "obrera-1");
  assert.deepEqual(config.positionals, ["obrera-1", "extra"]);
});

Deno.test("loadConfig takes the worker name from COLMENA_WORKER_NAME without a positional", () => {
  const config = loadConfig("worker", { args: [], env: { COLMENA_WORKER_NAME: "desde-env" } });
  assert.equal(config.name, "desde-env");
});

Deno.test({
  name: "loadConfig takes the worker name on the command line over COLMENA_WORKER_NAME",
  // BUG(config): loadConfig only uses the positional name when `merged.name` is still undefined, so
  // COLMENA_WORKER_NAME beats the name typed on the command line, against "flag, then environment
  // variable, then default". Remove `ignore` once fixed.
  fn() {
    const config = loadConfig("worker", {
      args: ["desde-args"],
      env: { COLMENA_WORKER_NAME: "desde-env" },
    });
    assert.equal(config.name, "desde-args");
  },
});

Deno.test("loadConfig takes --name over the positional worker name", () => {
  const config = loadConfig("worker", { args: ["--name", "desde-flag", "posicional"], env: {} });
  assert.equal(config.name, "desde-flag");
});

Deno.test("loadConfig rejects a worker name with characters outside [A-Za-z0-9_.-]", () => {
  assert.match(configError("worker", ["nombre con espacios"]), /^El nombre del worker debe ser /);
  assert.match(
    configError("worker", [], { COLMENA_WORKER_NAME: "a b" }),
    /^COLMENA_WORKER_NAME debe ser /,
  );
});

Deno.test("loadConfig sets quiet from --quiet and -q", () => {
  assert.equal(loadConfig("worker", { args: ["--quiet"], env: {} }).quiet, true);
  assert.equal(loadConfig("worker", { args: ["-q"], env: {} }).quiet, true);
});

Deno.test('loadConfig reads COLMENA_QUIET "true" and "false"', () => {
  assert.equal(loadConfig("worker", { args: [], env: { COLMENA_QUIET: "true" } }).quiet, true);
  assert.equal(loadConfig("worker", { args: [], env: { COLMENA_QUIET: "false" } }).quiet, false);
});

Deno.test("loadConfig takes --quiet over COLMENA_QUIET=false", () => {
  const config = loadConfig("worker", { args: ["--quiet"], env: { COLMENA_QUIET: "false" } });
  assert.equal(config.quiet, true);
});

Deno.test("loadConfig rejects a COLMENA_QUIET that is not a boolean", () => {
  assert.match(
    configError("worker", [], { COLMENA_QUIET: "quizás" }),
    /^COLMENA_QUIET debe ser true o false/,
  );
});

Deno.test("loadConfig lists an invalid port in Spanish, naming its flag and variable", () => {
  for (
    const [args, env] of [
      [["--port", "abc"], {}],
      [[], { COLMENA_PORT: "70000" }],
      [["--port=-1"], {}],
      [["--port", "80.5"], {}],
    ] as const
  ) {
    const message = configError("servidor", args, env);
    assert.match(message, /^(--port|COLMENA_PORT) debe ser un entero de 0 a 65535, no «[^»]+»$/);
  }
});

Deno.test("loadConfig rejects an unknown flag with ConfigError in Spanish naming the flag", () => {
  const message = configError("servidor", ["--puerto", "80"]);
  assert.match(message, /^Argumento no válido: /);
  assert.match(message, /--puerto/);
});

Deno.test("loadConfig rejects a flag of another role", () => {
  assert.match(configError("servidor", ["--quiet"]), /--quiet/);
});

Deno.test("loadConfig rejects a missing flag value", () => {
  assert.match(configError("servidor", ["--port"]), /^Argumento no válido: /);
});

Deno.test("loadConfig reports several problems at once", () => {
  const message = configError("servidor", ["--port", "abc", "--max-json-depth", "0"], {
    AMQP_URL: "http://rabbit:5672",
  });
  assert.deepEqual(message.split("\n").sort(), [
    "--max-json-depth debe ser un entero de 1 a 1000, no «0»",
    "--port debe ser un entero de 0 a 65535, no «abc»",
    "AMQP_URL debe empezar por amqp:// o amqps://, no «http://rabbit:5672»",
  ]);
});

Deno.test("loadConfig keeps the zod error as the cause of ConfigError", () => {
  try {
    loadConfig("worker", { args: ["--concurrency", "0"], env: {} });
    assert.fail("expected ConfigError");
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.ok(err.cause instanceof Error);
  }
});

Deno.test("loadConfig returns a frozen result", () => {
  const config = loadConfig("servidor", { args: ["--port", "1234"], env: {} });
  assert.ok(Object.isFrozen(config));
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
  assert.equal(config.port, 1234);
});

Deno.test("envNames lists every environment variable of a role", () => {
  const names = envNames("worker");
  for (const name of ["COLMENA_WORKER_NAME", "AMQP_URL", "COLMENA_QUIET", "COLMENA_CONCURRENCY"]) {
    assert.ok(names.includes(name), name);
  }
  assert.ok(envNames("servidor").includes("COLMENA_PORT"));
  assert.equal(envNames("servidor").includes("COLMENA_QUIET"), false);
});

Deno.test("the storage options of the servidor and the file options of the cliente load from flags or env", () => {
  const server = loadConfig("servidor", {
    args: ["--db-schema", "prueba_1", "--prune-interval-ms", "250", "--retention-days", "0.00001"],
    env: {},
  });
  assert.equal(server.dbSchema, "prueba_1");
  assert.equal(server.pruneIntervalMs, 250);
  assert.equal(server.retentionDays, 0.00001);
  const fromEnv = loadConfig("servidor", {
    args: [],
    env: { COLMENA_DB_SCHEMA: "otro", COLMENA_PRUNE_INTERVAL_MS: "1000" },
  });
  assert.equal(fromEnv.dbSchema, "otro");
  assert.equal(fromEnv.pruneIntervalMs, 1000);
  const defaults = loadConfig("servidor", { args: [], env: {} });
  assert.equal(defaults.dbSchema, "public");
  assert.equal(defaults.pruneIntervalMs, 3_600_000);
  assert.match(
    configError("servidor", ["--db-schema", 'x"; DROP']),
    /^--db-schema debe ser un identificador/,
  );

  const client = loadConfig("cliente", {
    args: ["enviar", "texto", "--archivo", "libro.txt"],
    env: { COLMENA_SALIDA: "r.json" },
  });
  assert.equal(client.archivo, "libro.txt");
  assert.equal(client.salida, "r.json");
  assert.deepEqual(client.positionals, ["enviar", "texto"]);
});

Deno.test("loadConfig says once per option what it takes, naming the flag and the value given", () => {
  assert.equal(
    configError("cliente", ["--prioridad", "alta"]),
    "--prioridad debe ser un entero de 0 a 9, no «alta»",
  );
  // One sentence for --limite, whatever the value: the same one historial and dlq print.
  for (const value of ["0", "2000", "x"]) {
    assert.equal(
      configError("cliente", ["--limite", value]),
      `--limite debe ser un entero de 1 a 500 (historial) o de 1 a 1000 (dlq), no «${value}»`,
    );
  }
  assert.equal(
    configError("servidor", ["--store", "mongo"]),
    "--store debe ser sqlite, postgres o memory, no «mongo»",
  );
  assert.equal(
    configError("cliente", [], { COLMENA_PRIORIDAD: "10" }),
    "COLMENA_PRIORIDAD debe ser un entero de 0 a 9, no «10»",
  );
  assert.match(configError("worker", ["nom bre"]), /^El nombre del worker debe ser un nombre/);
});

Deno.test("loadConfig suggests the option a misspelled one meant", () => {
  assert.equal(
    configError("cliente", ["--prioirdad", "3"]),
    "Argumento no válido: opción desconocida --prioirdad. ¿Quería decir «--prioridad»?",
  );
});

Deno.test("loadConfig reads enviar's --intentos and --timeout-ms, from 1 to 20 and to 3600000", () => {
  const config = loadConfig("cliente", {
    args: ["--intentos", "2"],
    env: { COLMENA_TIMEOUT_MS: "500" },
  });
  assert.equal(config.intentos, 2);
  assert.equal(config.timeoutMs, 500);
  assert.equal(
    configError("cliente", ["--intentos", "21"]),
    "--intentos debe ser un entero de 1 a 20, no «21»",
  );
});

Deno.test("--http takes host:port (IPv6 in brackets), COLMENA_HTTP too, and --sin-http turns it off", () => {
  const defaults = loadConfig("servidor", { args: [], env: {} });
  assert.deepEqual(defaults.http, { hostname: "localhost", port: 8080 });
  assert.equal(defaults.sinHttp, false);
  assert.deepEqual(
    loadConfig("servidor", { args: ["--http", "[::1]:0"], env: {} }).http,
    { hostname: "::1", port: 0 },
  );
  const fromEnv = loadConfig("servidor", {
    args: [],
    env: { COLMENA_HTTP: "0.0.0.0:9100", COLMENA_SIN_HTTP: "true" },
  });
  assert.deepEqual(fromEnv.http, { hostname: "0.0.0.0", port: 9100 });
  assert.equal(fromEnv.sinHttp, true);
  assert.equal(
    configError("servidor", ["--http", "localhost:99999"]),
    "--http debe ser host:puerto, como localhost:8080 o 127.0.0.1:0 (puerto de 0 a 65535), no «localhost:99999»",
  );
  assert.ok(envNames("servidor").includes("COLMENA_HTTP"));
  assert.ok(envNames("servidor").includes("COLMENA_SIN_HTTP"));
});

Deno.test("loadConfig reads --max-result-bytes-in-flight (64 MiB by default, 0 refused)", () => {
  assert.equal(
    loadConfig("servidor", { args: [], env: {} }).maxResultBytesInFlight,
    64 * 1024 * 1024,
  );
  assert.equal(
    loadConfig("servidor", { args: ["--max-result-bytes-in-flight", "1048576"], env: {} })
      .maxResultBytesInFlight,
    1_048_576,
  );
  assert.equal(
    loadConfig("servidor", { args: [], env: { COLMENA_MAX_RESULT_BYTES_IN_FLIGHT: "2097152" } })
      .maxResultBytesInFlight,
    2_097_152,
  );
  assert.match(
    configError("servidor", ["--max-result-bytes-in-flight", "0"]),
    /max-result-bytes-in-flight|maxResultBytesInFlight/,
  );
});

Deno.test("loadConfig reads --tareas-por-mensaje (32 by default, 1 turns batching off, 0 refused)", () => {
  assert.equal(loadConfig("servidor", { args: [], env: {} }).tasksPerMessage, 32);
  assert.equal(
    loadConfig("servidor", { args: ["--tareas-por-mensaje", "1"], env: {} }).tasksPerMessage,
    1,
  );
  assert.equal(
    loadConfig("servidor", { args: [], env: { COLMENA_TAREAS_POR_MENSAJE: "8" } })
      .tasksPerMessage,
    8,
  );
  assert.match(
    configError("servidor", ["--tareas-por-mensaje", "0"]),
    /tareas-por-mensaje|tasksPerMessage/,
  );
});
