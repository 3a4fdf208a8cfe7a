/**
 * The built-in task types, declared exactly as a user's own: one contract module and one handler module
 * each, in this folder.
 *
 * @module
 */
import { echoTask } from "./echo.ts";
import { hashTask } from "./hash.ts";
import { numbersTask } from "./numbers.ts";
import { sleepTask } from "./sleep.ts";
import { textTask } from "./text.ts";

/** The built-in catalogue, in the order menus show it. */
export const BUILTIN_TASKS = [textTask, numbersTask, echoTask, sleepTask, hashTask] as const;

/** The built-in catalogue's type. */
export type BuiltinTasks = typeof BUILTIN_TASKS;

export { echoTask, hashTask, numbersTask, sleepTask, textTask };
