/**
 * The recovering RabbitMQ connection each process holds, and the channel plumbing around it: watching
 * channels, closing them in order, publishing with confirms, and translating amqplib failures into
 * `BROKER_UNAVAILABLE`.
 *
 * @module
 */
import amqp from "amqplib";
import type { Channel, ChannelModel, ConfirmChannel } from "amqplib";
import type { Buffer } from "node:buffer";
import { ColmenaError } from "../../errors.ts";
import * as log from "../../log.ts";
import { isUntrustedCertificate } from "../../pem_files.ts";
import { redactUrl } from "../../redact.ts";
import { coalesceWrites } from "./coalesced_writes.ts";
import type { MessageSigner } from "./signing.ts";

/** Options common to both sides. */
export interface RabbitOptions {
  /** The AMQP URL; `amqps://` connects with TLS. */
  url: string;
  /** PEM of the CA that signs the broker's certificate (`amqps://`). @defaultValue the system's CAs */
  ca?: string | undefined;
  /** Connection attempts before giving up at start-up; afterwards it retries for ever. @defaultValue `4` */
  initialRetries?: number;
  /**
   * Signs what this side publishes and rejects what it consumes unless signed with the same key.
   * @defaultValue none: nothing is signed or checked
   */
  signer?: MessageSigner | undefined;
}

/** `BROKER_UNAVAILABLE`, with the amqplib failure as its cause when there is one. */
export function unavailable(cause?: unknown): ColmenaError {
  return new ColmenaError("BROKER_UNAVAILABLE", cause === undefined ? {} : { cause });
}

type RecoveringModel = Awaited<ReturnType<typeof _connectRecovering>>;

/** A recovering connection that runs `setup` after each connect and tracks whether it is up. */
export class Session {
  readonly #model: RecoveringModel;
  #up = false;
  #everUp = false;
  readonly #closed = Promise.withResolvers<void | Error>();
  #stopping = false;
  #reconnects = 0;
  #blocked = false;

  private constructor(model: RecoveringModel) {
    this.#model = model;
  }

  /**
   * Connects, running `setup` (declare the topology, create channels and consumers) after every connect;
   * `onDown` runs whenever the connection is lost. Rejects with `BROKER_UNAVAILABLE` when the first
   * connection fails after the initial retries.
   */
  static async open(
    options: RabbitOptions,
    handlers: {
      setup: (model: ChannelModel) => Promise<void>;
      onDown: () => void;
      /** Which of the process's connections it is, in its log lines (`de consumo`). @defaultValue none */
      label?: string;
    },
  ): Promise<Session> {
    const { setup, onDown } = handlers;
    const which = handlers.label === undefined ? "" : ` (${handlers.label})`;
    const model = await _connectRecovering(options, async (m) => {
      coalesceWrites(m);
      m.on("error", (err: Error) => log.error("Error en la conexión con RabbitMQ", err));
      await setup(m);
    });
    const s = new Session(model);
    model.on("connect", () => {
      if (s.#everUp) {
        s.#reconnects++;
        log.info(`Reconectado a RabbitMQ${which}`);
      }
      s.#up = true;
      s.#everUp = true;
    });
    model.on("disconnect", (err: Error) => {
      s.#up = false;
      s.#blocked = false;
      onDown();
      if (!s.#stopping) {
        log.warn(`Conexión con RabbitMQ perdida${which} (${err.message}); reintentando`);
      }
    });
    model.on("reconnect-scheduled", (info: { attempt: number; delay: number }) => {
      if (s.#everUp && info.attempt % 10 === 1) {
        log.warn(
          `Reintento ${info.attempt} de conexión a RabbitMQ en ${Math.round(info.delay)} ms`,
        );
      }
    });
    model.on("reconnect-failed", (err: Error) => {
      s.#up = false;
      onDown();
      log.error("No se pudo reconectar a RabbitMQ; se abandona", err);
      s.#closed.resolve(unavailable(err));
    });
    // A resource alarm (memory or disk): the broker stops reading from connections that publish until it
    // clears. Only a connection that publishes is told, when it next does.
    model.on("blocked", (reason: string) => {
      s.#blocked = true;
      log.warn(`RabbitMQ bloquea las publicaciones: ${reason}`);
    });
    model.on("unblocked", () => {
      s.#blocked = false;
      log.info("RabbitMQ desbloquea las publicaciones");
    });
    model.on("error", (err: Error) => log.error("Error en la conexión con RabbitMQ", err));
    model.on(
      "handler-error",
      (err: Error, event: string) => log.error(`Error en un manejador de "${event}"`, err),
    );
    await model.waitForConnect().catch((cause: unknown) => {
      throw unavailable(cause);
    });
    s.#up = true;
    s.#everUp = true;
    return s;
  }

  /** Whether the connection is up right now. */
  get up(): boolean {
    return this.#up;
  }

  /** Whether the broker has blocked this connection's publishing (a resource alarm) and not unblocked it. */
  get blocked(): boolean {
    return this.#blocked;
  }

  /** Times the connection came back after being lost. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** Resolves when the session has closed: with nothing after `close()`, with the reason after giving up. */
  closed(): Promise<void | Error> {
    return this.#closed.promise;
  }

  /** Closes the connection for good. */
  async close(): Promise<void> {
    this.#stopping = true;
    this.#up = false;
    try {
      await this.#model.close();
    } catch (err) {
      log.error("Error al cerrar la conexión con RabbitMQ", err);
    }
    this.#closed.resolve();
  }
}

/** What to check when a TLS handshake with the broker failed, in Spanish; empty for other failures. */
function _tlsHint(cause: unknown): string {
  const text = cause instanceof Error ? `${cause.message} ${String(cause.cause ?? "")}` : "";
  if (isUntrustedCertificate(cause)) {
    return ": su certificado TLS no es de una CA de confianza o no vale para ese nombre " +
      "(compruebe --amqp-ca / AMQP_CA_FILE y el nombre de la URL)";
  }
  if (/wrong version number|InvalidContentType|handshake|alert/i.test(text)) {
    return ": falló el saludo TLS (¿el puerto habla TLS? amqps:// es para un puerto TLS)";
  }
  return "";
}

async function _connectRecovering(
  options: RabbitOptions,
  setup: (model: ChannelModel) => Promise<void>,
) {
  try {
    return await amqp.connect(options.url, {
      noDelay: true,
      ...(options.ca === undefined ? {} : { ca: [options.ca] }),
      recovery: {
        initialDelay: 200,
        maxDelay: 5_000,
        factor: 2,
        jitter: 0.2,
        maxRetries: Infinity,
        initialMaxRetries: options.initialRetries ?? 4,
        setup,
      },
    });
  } catch (cause) {
    throw new ColmenaError("BROKER_UNAVAILABLE", {
      message: `No se puede conectar a RabbitMQ en ${redactUrl(options.url)}${_tlsHint(cause)}`,
      cause,
    });
  }
}

/** Closes the connection a broken channel belongs to, so that recovery rebuilds everything. */
export function watchChannel(
  model: ChannelModel,
  ch: Channel,
  options: { what: string; stopping: () => boolean },
): void {
  const { what, stopping } = options;
  ch.on("error", (err: Error) => log.error(`Error en el canal de ${what}`, err));
  ch.on(
    "handler-error",
    (err: Error, event: string) => log.error(`Error en un manejador de "${event}" (${what})`, err),
  );
  ch.on("close", () => {
    if (stopping()) return;
    log.warn(`El canal de ${what} se cerró; se reconecta`);
    model.close().catch(() => {});
  });
}

/**
 * Closes a channel and waits (at most `timeoutMs`) for the broker's close-ok. Acks sent on a channel are
 * applied before its close, whereas those still in flight when the whole connection closes can be dropped
 * (and their messages delivered again): so a process that stops closes its channels first.
 */
export async function closeChannel(ch: Channel | undefined, timeoutMs = 5_000): Promise<void> {
  if (ch === undefined) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.resolve().then(() => ch.close()).catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/** Where a message goes and what it carries, for {@linkcode confirmPublish}. */
export interface Outgoing {
  readonly exchange: string;
  readonly routingKey: string;
  readonly body: Buffer;
  readonly props: Record<string, unknown>;
}

/**
 * Publishes on a confirm channel and resolves on the broker's confirm. Rejects with `BROKER_UNAVAILABLE` when
 * the message could not leave (no channel, or the publish threw), and with `PUBLISH_UNCONFIRMED` when it left
 * but no confirm came (a nack, or the channel closed first): the broker may have stored it or not.
 */
export function confirmPublish(ch: ConfirmChannel | undefined, message: Outgoing): Promise<void> {
  if (ch === undefined) return Promise.reject(unavailable());
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  try {
    ch.publish(
      message.exchange,
      message.routingKey,
      message.body,
      message.props,
      (err: unknown) => {
        if (err) reject(new ColmenaError("PUBLISH_UNCONFIRMED", { cause: err }));
        else resolve();
      },
    );
  } catch (err) {
    reject(unavailable(err));
  }
  return promise;
}
