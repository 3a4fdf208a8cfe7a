/**
 * The deno.json role tasks grant exactly the environment variables each role's configuration reads, and
 * the server's tasks read (and its binary bundles) the migrations of both SQL stores.
 */
import assert from "node:assert/strict";
import { relative } from "node:path";
import { envNames, type Role } from "../../shared/config.ts";
import type { Flavour } from "../../server/stores/columns.ts";
import { migrationsFolder } from "../../server/stores/migrations.ts";

const ROOT = new URL("../../", import.meta.url);
const deno = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));

/** The values of every `--flag=a,b` or `--flag a` of a task, as paths relative to the project root. */
function flagPaths(task: string, flag: string): string[] {
  const parts = roleCommand(task).split(" ");
  return parts.flatMap((part, i) => {
    if (part.startsWith(`${flag}=`)) return part.slice(flag.length + 1).split(",");
    if (part === flag) return [parts[i + 1] ?? ""];
    return [];
  }).map((path) => path.replace(/^\.\//, "").replace(/\/$/, ""));
}

/** Whether `path` is `folder` or inside it. */
function covers(folder: string, path: string): boolean {
  return path === folder || path.startsWith(`${folder}/`);
}

/** The role's own command: what follows the task-module launcher's `--`, or the whole task. */
function roleCommand(task: string): string {
  const at = task.indexOf(" -- ");
  return at === -1 ? task : task.slice(at + 4);
}

function allowedEnv(task: string): string[] {
  const flag = roleCommand(task).split(" ").find((part) => part.startsWith("--allow-env="));
  return flag === undefined ? [] : flag.slice("--allow-env=".length).split(",").sort();
}

for (
  const [role, tasks] of [
    ["servidor", ["servidor", "compile:servidor"]],
    ["worker", ["worker", "compile:worker"]],
    ["cliente", ["cliente", "compile:cliente"]],
  ] as [Role, string[]][]
) {
  for (const task of tasks) {
    Deno.test(`deno task ${task} allows exactly the environment variables the ${role} reads`, () => {
      assert.deepEqual(allowedEnv(deno.tasks[task]), [...envNames(role)].sort());
      assert.match(roleCommand(deno.tasks[task]), /--ignore-env/);
      assert.doesNotMatch(deno.tasks[task], /(^| )-A( |$)|--allow-all/);
    });
  }
}

for (const flavour of ["sqlite", "postgres"] as Flavour[]) {
  const folder = relative(ROOT.pathname, migrationsFolder(flavour).pathname);
  Deno.test(`deno task servidor reads the ${flavour} migrations and its binary bundles them`, async () => {
    const files = await Array.fromAsync(Deno.readDir(migrationsFolder(flavour)));
    assert.ok(files.some((file) => file.name.startsWith("0001_")), `${folder} has no 0001_ file`);
    for (const task of ["servidor", "compile:servidor"]) {
      const readable = flagPaths(deno.tasks[task], "--allow-read");
      assert.ok(readable.some((path) => covers(path, folder)), `${task} cannot read ${folder}`);
    }
    const bundled = flagPaths(deno.tasks["compile:servidor"], "--include");
    assert.ok(
      bundled.some((path) => covers(path, folder)),
      `compile:servidor leaves out ${folder}`,
    );
  });
}

Deno.test("deno task servidor reads its data folder, the migrations, the SQLite writer thread and the web pages' files, and no other source", () => {
  const migrations = relative(ROOT.pathname, new URL("../", migrationsFolder("sqlite")).pathname);
  // The SQLite store's writer thread loads its module at run time, which needs read access to the file.
  const writer = "server/stores/sqlite_writer.ts";
  assert.ok(Deno.statSync(new URL(writer, ROOT)).isFile);
  for (const task of ["servidor", "compile:servidor"]) {
    assert.deepEqual(flagPaths(deno.tasks[task], "--allow-read").sort(), [
      "data",
      migrations,
      writer,
      "server/web",
    ]);
  }
  const bundled = flagPaths(deno.tasks["compile:servidor"], "--include");
  assert.ok(bundled.includes("server/web"));
  assert.ok(bundled.includes(writer));
});

for (const task of ["servidor", "worker", "compile:servidor", "compile:worker"]) {
  Deno.test(`deno task ${task} runs through the launcher that grants read access to task modules`, () => {
    const text: string = deno.tasks[task];
    assert.match(
      text,
      /^deno run --allow-run=deno --allow-read --allow-env scripts\/with_task_modules\.ts -- deno (run|compile) /,
    );
    // The role itself may read only its own folders until the launcher adds the task modules'.
    const read = roleCommand(text).split(" ").find((part) => part.startsWith("--allow-read"));
    assert.ok(read?.startsWith("--allow-read=./data"), String(read));
  });
}

Deno.test("deno task worker reads and writes its blob folder only, never the server's database", () => {
  for (const task of ["worker", "compile:worker"]) {
    const readable = flagPaths(deno.tasks[task], "--allow-read");
    const writable = flagPaths(deno.tasks[task], "--allow-write");
    assert.deepEqual(writable, ["data/blobs"]);
    for (const path of [...readable, ...writable]) {
      assert.ok(!covers(path, "data/colmena.db"), `${task} can reach data/colmena.db via ${path}`);
    }
  }
});
