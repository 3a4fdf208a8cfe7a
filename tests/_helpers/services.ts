/**
 * Probes the services tests need, once per process. A missing service makes its tests `ignore`d with a named
 * reason on a developer's machine, and fails them under `CI=true`.
 *
 * @module
 */
import { LOCAL_S3_CREDENTIALS, type LocalS3Server, startS3Server } from "./s3_server.ts";

/** The AMQP URL tests use. */
export const AMQP_URL = Deno.env.get("AMQP_URL") ?? "amqp://guest:guest@127.0.0.1:5672";

const inCi = Deno.env.get("CI") === "true";
const probes = new Map<string, Promise<boolean>>();

async function reachable(hostname: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

function amqpEndpoint(): { hostname: string; port: number } {
  const url = new URL(AMQP_URL.replace(/^amqps?:/, "http:"));
  return { hostname: url.hostname, port: Number(url.port || 5672) };
}

/** Whether RabbitMQ answers at `AMQP_URL`. */
export function rabbitUp(): Promise<boolean> {
  let probe = probes.get("rabbitmq");
  if (probe === undefined) {
    const { hostname, port } = amqpEndpoint();
    probe = reachable(hostname, port);
    probes.set("rabbitmq", probe);
  }
  return probe;
}

/** Test options for tests that need RabbitMQ: ignored with a reason when it is down, except under CI. */
export async function needsRabbit(): Promise<{ ignore: boolean }> {
  return needs("RabbitMQ", AMQP_URL, await rabbitUp());
}

/** The PostgreSQL URL tests use (trust authentication on loopback). */
export const DATABASE_URL = Deno.env.get("DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";

/** Whether PostgreSQL answers at `DATABASE_URL`. */
export function postgresUp(): Promise<boolean> {
  let probe = probes.get("postgres");
  if (probe === undefined) {
    const url = new URL(DATABASE_URL.replace(/^postgres(ql)?:/, "http:"));
    probe = reachable(url.hostname, Number(url.port || 5432));
    probes.set("postgres", probe);
  }
  return probe;
}

/** Test options for tests that need PostgreSQL: ignored with a reason when it is down, except under CI. */
export async function needsPostgres(): Promise<{ ignore: boolean }> {
  return needs("PostgreSQL", DATABASE_URL, await postgresUp());
}

function needs(service: string, url: string, up: boolean): { ignore: boolean } {
  if (!up && !inCi) {
    // deno-lint-ignore no-console
    console.warn(
      `[omitido] ${service} no responde en ${url}: se omiten las pruebas que lo necesitan`,
    );
    return { ignore: true };
  }
  if (!up && inCi) {
    throw new Error(
      `${service} is unreachable at ${url} and CI=true: a missing service is a failure`,
    );
  }
  return { ignore: false };
}

/** How tests reach an S3-compatible server. */
export interface S3Target {
  /** The server's URL. */
  readonly endpoint: string;
  /** The region to sign for. */
  readonly region: string;
  /** The bucket tests use (each store adds a unique key prefix). */
  readonly bucket: string;
  /** Credentials for `endpoint`. */
  readonly credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Whether it is the local s3rver started for this process (its quirks: docs/s3.md). */
  readonly local: boolean;
}

let s3Probe: Promise<S3Target | Error> | undefined;

function s3FromEnv(endpoint: string): S3Target {
  const sessionToken = Deno.env.get("AWS_SESSION_TOKEN");
  return {
    endpoint,
    region: Deno.env.get("AWS_REGION") ?? "us-east-1",
    bucket: Deno.env.get("S3_BUCKET") ?? "colmena-test",
    credentials: {
      accessKeyId: Deno.env.get("AWS_ACCESS_KEY_ID") ?? "",
      secretAccessKey: Deno.env.get("AWS_SECRET_ACCESS_KEY") ?? "",
      ...(sessionToken === undefined ? {} : { sessionToken }),
    },
    local: false,
  };
}

async function probeS3(): Promise<S3Target | Error> {
  const endpoint = Deno.env.get("S3_ENDPOINT");
  if (endpoint !== undefined && endpoint !== "") {
    const url = new URL(endpoint);
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    return await reachable(url.hostname, port)
      ? s3FromEnv(endpoint)
      : new Error(`nothing answers at S3_ENDPOINT ${endpoint}`);
  }
  let server: LocalS3Server;
  try {
    server = await startS3Server();
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
  // Lives as long as this test process: it exits by itself when our end of its stdin closes.
  server.unref();
  return {
    endpoint: server.endpoint,
    region: "us-east-1",
    bucket: "colmena-test",
    credentials: { ...LOCAL_S3_CREDENTIALS },
    local: true,
  };
}

/**
 * The S3-compatible server of the tests, probed once per process: `S3_ENDPOINT` with the `AWS_*` credentials
 * and `S3_BUCKET` when set, otherwise a local s3rver started for this process (tests/_helpers/s3_server.ts).
 * Resolves with the reason when there is none.
 */
export function s3Target(): Promise<S3Target | Error> {
  s3Probe ??= probeS3();
  return s3Probe;
}

/** Test options for tests that need S3: ignored with a reason when there is none, except under CI. */
export async function needsS3(): Promise<{ ignore: boolean }> {
  const target = await s3Target();
  if (!(target instanceof Error)) return { ignore: false };
  if (inCi) {
    throw new Error(
      `No S3-compatible server and CI=true: a missing service is a failure (${target.message})`,
      { cause: target },
    );
  }
  // deno-lint-ignore no-console
  console.warn(
    `[omitido] No hay servidor compatible con S3 (${target.message}): se omiten las pruebas que lo necesitan`,
  );
  return { ignore: true };
}
