/**
 * The handler of the `echo` task type.
 *
 * @module
 */
import { echoTask } from "./echo.ts";

/** `{message}` → `{message}`. */
export default echoTask.implement(({ message }) => ({ message }));
