/**
 * Starts a local S3-compatible server for tests: s3rver (npm `@20minutes/s3rver`, `s3rver` in the import map)
 * in a child Deno process on 127.0.0.1, a free port and a temporary data folder. See docs/s3.md.
 *
 * Run as the main module, this file is that child: `deno run … s3_server.ts <folder>` serves `<folder>`,
 * prints `{"port":N}` on one line, and exits (removing the folder) when its standard input closes — so it
 * also goes away when the test process dies.
 *
 * @module
 */
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
  /** Where it keeps buckets and objects. */
  readonly directory: string;
  /** The child's process id. */
  readonly pid: number;
  /** Stops the server and removes its folder; idempotent. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startS3Server}. */
export interface StartS3ServerOptions {
  /** How long to wait for the port (the first run may fetch the npm package). @defaultValue `60_000` */
  timeoutMs?: number;
}

/**
 * Starts s3rver in a child process with narrow permissions (`--allow-net=127.0.0.1`, read and write on its
 * folder only). Rejects, after stopping the child, when it does not print its port in time.
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
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdin = child.stdin.getWriter();
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
        await child.status;
      } finally {
        clearTimeout(timer);
      }
      await Deno.remove(directory, { recursive: true }).catch(() => {});
    })();
    return stopped;
  };

  let port: number;
  try {
    port = await readPort(child, options.timeoutMs ?? 60_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    directory,
    pid: child.pid,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Reads the child's `{"port":N}` line, then lets go of its output so no read stays pending. */
async function readPort(child: Deno.ChildProcess, timeoutMs: number): Promise<number> {
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let errText = "";
  const collectErr = (async () => {
    while (true) {
      const { done, value } = await stderr.read().catch(() => ({ done: true, value: undefined }));
      if (done) return;
      errText += value;
    }
  })();
  const { promise: timedOut, reject: timeout } = Promise.withResolvers<never>();
  const timer = setTimeout(
    () => timeout(new Error(`S3 test server printed no port within ${timeoutMs} ms`)),
    timeoutMs,
  );
  const readLine = (async () => {
    let text = "";
    while (!text.includes("\n")) {
      const { done, value } = await stdout.read();
      if (done) {
        await collectErr;
        throw new Error(`S3 test server exited before listening: ${errText.trim() || "no output"}`);
      }
      text += value;
    }
    const port: unknown = JSON.parse(text.slice(0, text.indexOf("\n"))).port;
    if (typeof port !== "number") throw new Error(`S3 test server printed ${JSON.stringify(text)}`);
    return port;
  })();
  try {
    return await Promise.race([readLine, timedOut]);
  } finally {
    clearTimeout(timer);
    await stdout.cancel().catch(() => {});
    await stderr.cancel().catch(() => {});
    await Promise.allSettled([readLine, collectErr]);
  }
}

/** The slice of s3rver's API used here (the package ships no types). */
interface S3rver {
  run(): Promise<{ port: number }>;
}

/** The child: serves `directory` until standard input closes. */
async function serve(directory: string): Promise<void> {
  const { default: S3rverClass } = await import("s3rver") as {
    default: new (options: Record<string, unknown>) => S3rver;
  };
  const server = new S3rverClass({
    address: "127.0.0.1",
    port: 0,
    directory,
    silent: true,
    // s3rver signs bucket-level requests over `/bucket` while SDK v3 sends `/bucket/`, so it rejects every
    // CreateBucket, HeadBucket and DeleteObjects. Access key ids are still checked. See docs/s3.md.
    allowMismatchedSignatures: true,
    vhostBuckets: false,
  });
  const { port } = await server.run();
  try {
    await Deno.stdout.write(new TextEncoder().encode(`${JSON.stringify({ port })}\n`));
    for await (const _ of Deno.stdin.readable) {
      // Nothing is sent on stdin; its end (or failure) means "stop".
    }
  } finally {
    await Deno.remove(directory, { recursive: true }).catch(() => {});
    Deno.exit(0);
  }
}

if (import.meta.main) {
  const directory = Deno.args[0];
  if (directory === undefined) throw new TypeError("Usage: s3_server.ts <folder>");
  await serve(directory);
}
