/**
 * The handler of the `text` task type.
 *
 * @module
 */
import { processText, textTask } from "./text.ts";

/** `{text}` → `{words, reversed, upper}`. */
export default textTask.implement(({ text }) => processText(text));
