/**
 * The deno.json role tasks grant exactly the environment variables each role's configuration reads.
 */
import assert from "node:assert/strict";
import { envNames, type Role } from "../../shared/config.ts";

const deno = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));

function allowedEnv(task: string): string[] {
  const flag = task.split(" ").find((part) => part.startsWith("--allow-env="));
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
      assert.match(deno.tasks[task], /--ignore-env/);
      assert.doesNotMatch(deno.tasks[task], /(^| )-A( |$)|--allow-all/);
    });
  }
}
