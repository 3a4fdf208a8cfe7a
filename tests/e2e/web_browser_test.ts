/**
 * End to end in a real browser (headless Chromium through playwright-core): the dashboard (`/`) shows the
 * workers that start and counts that move while tasks run, lists a failure and requeues it from the
 * dead-letter queue, and renders hostile strings as text; the browser client (`/cliente`) submits a `text`
 * task over the WebSocket bridge and shows its word count, and shows the server's Spanish error for an
 * invalid form. With `COLMENA_CAPTURA_PANEL=<fichero.png>` the dashboard under load is also saved there
 * (how docs/img/panel.png is made).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { TaskClient } from "../../client.ts";
import { launchBrowser, needsChromium } from "../_helpers/browser.ts";
import { startServer, startWorker, uniqueQueues } from "../_helpers/processes.ts";
import { needsRabbit } from "../_helpers/services.ts";

/** The page's DOM, as far as these tests read it (the page functions run in the browser). */
interface PageNode {
  readonly textContent: string | null;
  readonly children: ArrayLike<PageNode>;
}
/** `globalThis` in the page. */
interface PageWindow {
  readonly document: {
    getElementById(id: string): PageNode | null;
    querySelectorAll(selector: string): ArrayLike<PageNode> & Iterable<PageNode>;
  };
  readonly __xss?: number;
}

const rabbit = await needsRabbit();
const chromiumReady = await needsChromium();
const HOSTILE_NAME = "<script>window.__xss=1</script>";
const HOSTILE_TEXT = '<img src=x onerror="window.__xss=2">';

/** playwright-core keeps its pipe to Chromium and timers between calls: the browser is closed in `finally`. */
const browserTest = {
  ...(rabbit.ignore || chromiumReady.ignore ? { ignore: true } : {}),
  sanitizeOps: false,
  sanitizeResources: false,
};

/** The number in column `column` of the "por tipo" row of `type`, or 0. */
function typeCount(page: Page, type: string, column: number): Promise<number> {
  return page.evaluate(([type, column]) => {
    for (
      const tr of (globalThis as unknown as PageWindow).document.querySelectorAll(
        "#por-tipo tbody tr",
      )
    ) {
      if (tr.children[0]?.textContent === type) return Number(tr.children[column]?.textContent);
    }
    return 0;
  }, [type, column] as const);
}

async function waitForCount(page: Page, type: string, column: number, above: number) {
  await page.waitForFunction(
    ([type, column, above]) => {
      for (
        const tr of (globalThis as unknown as PageWindow).document.querySelectorAll(
          "#por-tipo tbody tr",
        )
      ) {
        if (tr.children[0]?.textContent === type) {
          return Number(tr.children[column]?.textContent) >
            above;
        }
      }
      return false;
    },
    [type, column, above] as const,
    { timeout: 30_000 },
  );
}

Deno.test({
  name:
    "the dashboard shows two workers, counts that move under load, a failure it requeues, and hostile names as text",
  ...browserTest,
  async fn() {
    await using queues = uniqueQueues("webpanel");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    await page.goto(`http://127.0.0.1:${server.httpPort}/`);
    await page.waitForFunction(() =>
      (globalThis as unknown as PageWindow).document.getElementById("estado")?.textContent ===
        "en directo"
    );
    assert.equal(await page.textContent("#num-workers"), "0");

    await using _w1 = await startWorker("abeja-1", queues, ["--quiet"]);
    await using _w2 = await startWorker("abeja-2", queues, ["--quiet"]);
    await page.waitForFunction(
      () =>
        (globalThis as unknown as PageWindow).document.getElementById("num-workers")
          ?.textContent === "2",
      {
        timeout: 30_000,
      },
    );
    const names = await page.$$eval(
      "#workers tbody tr td:first-child",
      (tds) => tds.map((td) => td.textContent),
    );
    assert.deepEqual(names, ["abeja-1", "abeja-2"]);

    await using client = new TaskClient({
      host: "127.0.0.1",
      port: server.port,
      kind: "mobile",
      name: HOSTILE_NAME,
    });
    const batch = (n: number) =>
      Promise.all(
        Array.from({ length: n }, (_, i) =>
          i % 2 === 0
            ? client.run("echo", { message: HOSTILE_TEXT })
            : client.run("text", { text: `hola ${i}` })),
      );
    await batch(10);
    await waitForCount(page, "echo", 3, 0);
    const before = await typeCount(page, "echo", 3);
    await batch(20);
    await waitForCount(page, "echo", 3, before);

    // A task that times out on its only attempt fails for good: it is listed with its error, and requeued.
    const failing = await client.submit("sleep", { ms: 2_000 }, { timeoutMs: 50, maxAttempts: 1 });
    await page.waitForSelector(`#fallos tbody tr button[title="${failing}"]`, { timeout: 30_000 });
    const failure = await page.textContent("#fallos tbody tr:first-child td:nth-child(4)");
    assert.match(failure ?? "", /^TIMEOUT: /);
    await page.click("#fallos tbody tr:first-child button:text('Reencolar')");
    await page.waitForFunction(
      (id) =>
        (globalThis as unknown as PageWindow).document.getElementById("aviso")?.textContent ===
          `Reencolada: ${id}`,
      failing,
    );

    // Hostile strings from clients are text: no element is created from them and no script runs.
    await page.waitForFunction(
      (name) =>
        [...(globalThis as unknown as PageWindow).document.querySelectorAll("#recientes tbody td")]
          .some((td) => td.textContent === `${name} (mobile)`),
      HOSTILE_NAME,
    );
    const echoRow = await page.$$eval(
      "#recientes tbody tr",
      (rows) => rows.map((r) => r.children[1]?.textContent).indexOf("echo"),
    );
    assert.ok(echoRow >= 0);
    await page.click(`#recientes tbody tr:nth-child(${echoRow + 1}) button`);
    await page.waitForFunction(
      (text) =>
        (globalThis as unknown as PageWindow).document.getElementById("detalle")?.textContent
          ?.includes(JSON.stringify(text)) ?? false,
      HOSTILE_TEXT,
    );
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageWindow).__xss), undefined);
    assert.equal(await page.$$eval("main script, main img", (nodes) => nodes.length), 0);

    const capture = Deno.env.get("COLMENA_CAPTURA_PANEL");
    if (capture !== undefined) {
      // Some twenty seconds of mixed load, then the picture while tasks still run.
      for (let round = 0; round < 20; round++) {
        await Promise.all([
          batch(20 + round * 3),
          client.run("sleep", { ms: 50 + round * 20 }),
          client.run("hash", { data: "colmena", iterations: 20_000 }),
        ]);
      }
      const tail = batch(100);
      await page.screenshot({ path: capture, fullPage: true });
      await tail;
    }
    await page.close();
  },
});

Deno.test({
  name:
    "the browser client submits a text task and shows its word count, and shows the server's Spanish error for an invalid form",
  ...browserTest,
  async fn() {
    await using queues = uniqueQueues("webcliente");
    await using server = await startServer(queues, ["--store", "memory"]);
    await using _worker = await startWorker("abeja-web", queues, ["--quiet"]);
    await using browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.httpPort}/cliente`);
    await page.waitForFunction(() =>
      (globalThis as unknown as PageWindow).document.getElementById("estado")?.textContent
        ?.startsWith("conectado") ?? false
    );
    const types = await page.$$eval(
      "#tipo option",
      (options) => options.map((o) => (o as unknown as { value: string }).value),
    );
    assert.deepEqual(types, ["text", "numbers", "echo", "sleep", "hash"]);

    await page.selectOption("#tipo", "text");
    await page.fill("#campo-text", "hola mundo desde el navegador");
    await page.click("#enviar");
    const words = await page.waitForSelector(
      'li.resultado[data-estado="succeeded"] dd[data-campo="words"]',
      { timeout: 30_000 },
    );
    assert.equal(await words.textContent(), "5");

    await page.selectOption("#tipo", "sleep");
    await page.fill("#campo-ms", "mucho");
    await page.click("#enviar");
    await page.waitForFunction(() =>
      ((globalThis as unknown as PageWindow).document.getElementById("error")?.textContent ??
        "") !== ""
    );
    assert.match(
      (await page.textContent("#error")) ?? "",
      /^INVALID_PAYLOAD: Datos no válidos para "sleep": /,
    );
    assert.equal(await page.$$eval('li.resultado[data-estado="rechazada"]', (l) => l.length), 1);

    // An output holding markup is shown as text.
    await page.selectOption("#tipo", "echo");
    await page.fill("#campo-message", HOSTILE_TEXT);
    await page.click("#enviar");
    const echoed = await page.waitForSelector(
      'li.resultado[data-estado="succeeded"] dd[data-campo="message"]',
      { timeout: 30_000 },
    );
    assert.equal(await echoed.textContent(), HOSTILE_TEXT);
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageWindow).__xss), undefined);
    assert.equal(await page.$$eval("#resultados img", (nodes) => nodes.length), 0);
    await page.close();
  },
});

Deno.test({
  name:
    "on a server with tokens the browser client asks for one, sends it in its hello, and then submits as that principal",
  ...browserTest,
  async fn() {
    await using queues = uniqueQueues("webtoken");
    const dir = await Deno.makeTempDir({ prefix: "colmena-web-tokens-" });
    try {
      const file = `${dir}/tokens.jsonl`;
      const made = await new Deno.Command(Deno.execPath(), {
        args: ["task", "-q", "cliente", "token", "crear", "navegante", "--tokens", file],
        cwd: new URL("../../", import.meta.url),
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
      const token = new TextDecoder().decode(made.stdout).trim();
      await using server = await startServer(queues, ["--store", "memory", "--tokens", file]);
      await using _worker = await startWorker("abeja-token", queues, ["--quiet"]);
      await using browser = await launchBrowser();
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${server.httpPort}/cliente`);
      // No token yet: the server refuses the hello, and the page asks for one.
      await page.waitForSelector("#dialogo-token[open]", { timeout: 15_000 });
      assert.match((await page.textContent("#texto-token")) ?? "", /token de acceso/);
      await page.fill("#token", token);
      await page.click('#dialogo-token button[value="ok"]');
      await page.waitForFunction(() =>
        (globalThis as unknown as PageWindow).document.getElementById("estado")?.textContent
          ?.startsWith("conectado") ?? false
      );
      await page.selectOption("#tipo", "text");
      await page.fill("#campo-text", "con token");
      await page.click("#enviar");
      const words = await page.waitForSelector(
        'li.resultado[data-estado="succeeded"] dd[data-campo="words"]',
        { timeout: 30_000 },
      );
      assert.equal(await words.textContent(), "2");
      await page.close();
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
