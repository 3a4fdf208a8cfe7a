/**
 * Probes the services tests need, once per process. A missing service makes its tests `ignore`d with a named
 * reason on a developer's machine, and fails them under `CI=true`.
 *
 * @module
 */

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
  const up = await rabbitUp();
  if (!up && !inCi) {
    // deno-lint-ignore no-console
    console.warn(
      `[omitido] RabbitMQ no responde en ${AMQP_URL}: se omiten las pruebas que lo necesitan`,
    );
    return { ignore: true };
  }
  if (!up && inCi) {
    throw new Error(
      `RabbitMQ is unreachable at ${AMQP_URL} and CI=true: a missing service is a failure`,
    );
  }
  return { ignore: false };
}
