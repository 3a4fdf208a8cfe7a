/**
 * Starts a local S3-compatible server for tests: s3rver (npm `@20minutes/s3rver`, `s3rver` in the import map)
 * in a child Deno process on 127.0.0.1, a free port and a temporary folder. See docs/s3.md.
 *
 * Run as the main module, this file is that child: `deno run … s3_server.ts <folder>` keeps buckets in
 * `<folder>/data`, writes its port to `<folder>/port`, and exits (removing the folder) when its standard
 * input closes — so it also goes away when the test process ends or dies.
 *
 * @module
 */
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SCRIPT = fileURLToPath(import.meta.url);

/** The credentials s3rver knows (its built-in account); others are refused with `InvalidAccessKeyId`. */
export const LOCAL_S3_CREDENTIALS = {
  accessKeyId: "S3RVER",
  secretAccessKey: "S3RVER",
} as const;

/** A running local S3 server. */
export interface LocalS3Server extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** Its temporary folder (buckets and objects under `data/`). */
  readonly directory: string;
  /** The child's process id. */
  readonly pid: number;
  /** Stops the server and removes its folder; idempotent. */
  stop(): Promise<void>;
  /** Lets this process exit with the server running; it then stops by itself as its stdin closes. */
  unref(): void;
}

/** Options of {@linkcode startS3Server}. */
export interface StartS3ServerOptions {
  /** How long to wait for the port (the first run may fetch the npm package). @defaultValue `60_000` */
  timeoutMs?: number;
}

/**
 * Starts s3rver in a child process with narrow permissions (`--allow-net=127.0.0.1`, read and write on its
 * folder only). Rejects, after stopping the child, when it does not listen in time or exits first.
 */
export async function startS3Server(options: StartS3ServerOptions = {}): Promise<LocalS3Server> {
  const directory = await Deno.makeTempDir({ prefix: "colmena-s3-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--ignore-env",
      "--allow-net=127.0.0.1",
      `--allow-read=${directory}`,
      `--allow-write=${directory}`,
      SCRIPT,
      directory,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "null",
    // Read only if the child exits before listening, to say why; never left with a read pending.
    stderr: "piped",
  }).spawn();
  const stdin = child.stdin.getWriter();
  let exited = false;
  const status = child.status.finally(() => {
    exited = true;
  });

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await stdin.close().catch(() => {});
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }, 5_000);
      try {
        await status;
      } finally {
        clearTimeout(timer);
      }
      await child.stderr.cancel().catch(() => {});
      await Deno.remove(directory, { recursive: true }).catch(() => {});
    })();
    return stopped;
  };

  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let port: number | undefined;
  let failure: Error | undefined;
  while (port === undefined && failure === undefined) {
    port = await readPortFile(directory);
    if (port !== undefined) break;
    if (exited) {
      const text = await new Response(child.stderr).text().catch(() => "");
      failure = new Error(`S3 test server exited before listening: ${text.trim() || "no output"}`);
    } else if (Date.now() > deadline) {
      failure = new Error(`S3 test server did not listen within ${timeoutMs} ms`);
    } else {
      await delay(50);
    }
  }
  if (port === undefined) {
    await stop();
    throw failure;
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    directory,
    pid: child.pid,
    stop,
    unref() {
      child.unref();
    },
    [Symbol.asyncDispose]: stop,
  };
}

async function readPortFile(directory: string): Promise<number | undefined> {
  try {
    const port = Number(await Deno.readTextFile(join(directory, "port")));
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** The slice of s3rver's API used here (the package ships no types). */
interface S3rver {
  run(): Promise<{ port: number }>;
}

/** The child: serves `<directory>/data` until standard input closes. */
async function serve(directory: string): Promise<void> {
  const { default: S3rverClass } = await import("s3rver") as {
    default: new (options: Record<string, unknown>) => S3rver;
  };
  const server = new S3rverClass({
    address: "127.0.0.1",
    port: 0,
    directory: join(directory, "data"),
    silent: true,
    // s3rver signs bucket-level requests over `/bucket` while SDK v3 sends `/bucket/`, so it would reject
    // every CreateBucket, HeadBucket and DeleteObjects. Access key ids are still checked. See docs/s3.md.
    allowMismatchedSignatures: true,
    vhostBuckets: false,
  });
  let code = 0;
  try {
    const { port } = await server.run();
    // Written whole, then renamed, so the parent never reads half a number.
    await Deno.writeTextFile(join(directory, "port.tmp"), String(port));
    await Deno.rename(join(directory, "port.tmp"), join(directory, "port"));
    for await (const _ of Deno.stdin.readable) {
      // Nothing is sent on stdin; its end (or failure) means "stop".
    }
  } catch (err) {
    await Deno.stderr.write(
      new TextEncoder().encode(`${err instanceof Error ? err.stack : err}\n`),
    );
    code = 1;
  } finally {
    await Deno.remove(directory, { recursive: true }).catch(() => {});
  }
  Deno.exit(code);
}

if (import.meta.main) {
  const directory = Deno.args[0];
  if (directory === undefined) throw new TypeError("Usage: s3_server.ts <folder>");
  await serve(directory);
}
