/**
 * Headless Chromium (Debian's `chromium` package) driven by `playwright-core`, for the tests of the
 * dashboard and the browser client. Without Chromium those tests are `ignore`d with a named reason, except
 * under `CI=true`, where its absence is a failure (`.ci/run` installs it).
 *
 * @module
 */
import fs from "node:fs";
import type { Browser } from "playwright-core";

/** Where Chromium is: `CHROMIUM_BIN`, or Debian's `/usr/bin/chromium`. */
export const CHROMIUM_BIN = Deno.env.get("CHROMIUM_BIN") ?? "/usr/bin/chromium";

async function _exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Test options for tests that need Chromium: ignored with a reason when it is missing, except under CI. */
export async function needsChromium(): Promise<{ ignore: boolean }> {
  const found = await _exists(CHROMIUM_BIN);
  if (found) return { ignore: false };
  if (Deno.env.get("CI") === "true") {
    throw new Error(
      `Chromium is missing at ${CHROMIUM_BIN} and CI=true: install the chromium package`,
    );
  }
  // deno-lint-ignore no-console
  console.warn(
    `[omitido] Chromium no está en ${CHROMIUM_BIN}: se omiten las pruebas en el navegador (apt-get install chromium)`,
  );
  return { ignore: true };
}

/**
 * Node's `existsSync` answers `false` for a path it may not read; Deno's throws `NotCapable` for paths
 * only `--allow-all` may read, such as `/proc/sys/fs/binfmt_misc/WSLInterop`, which playwright-core probes
 * when it loads (to detect WSL). Restores Node's behaviour for that one case, so the tests keep their
 * narrow permissions instead of `--allow-all`.
 */
function _nodeExistsSync(): void {
  const existsSync = fs.existsSync;
  if ((existsSync as { colmenaNode?: true }).colmenaNode) return;
  const patched = (path: fs.PathLike) => {
    try {
      return existsSync(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotCapable) return false;
      throw err;
    }
  };
  fs.existsSync = Object.assign(patched, { colmenaNode: true as const });
}

/** Launches headless Chromium; closed on disposal. */
export async function launchBrowser(): Promise<Browser & AsyncDisposable> {
  _nodeExistsSync();
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  return Object.assign(browser, {
    async [Symbol.asyncDispose]() {
      await browser.close().catch(() => {});
    },
  });
}
