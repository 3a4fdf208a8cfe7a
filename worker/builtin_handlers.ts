/**
 * The built-in task types' handler modules, imported statically so that they are part of the worker's own
 * module graph: loading them by the URL their contracts name (as every handler is loaded) then needs no
 * read permission, and `deno compile` bundles them. Threads still load the isolated ones by URL.
 *
 * @module
 */
import "../shared/tasks/echo_handler.ts";
import "../shared/tasks/hash_handler.ts";
import "../shared/tasks/numbers_handler.ts";
import "../shared/tasks/sleep_handler.ts";
import "../shared/tasks/text_handler.ts";
