/**
 * The help flags every colmena command takes: `--help`, `-h` and `--ayuda`.
 *
 * @module
 */

/** The flags that ask a command for its usage. */
export const HELP_FLAGS: readonly string[] = ["--help", "-h", "--ayuda"];

/** Whether raw arguments ask for help (a help flag before any `--`), which option parsing would reject. */
export function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  const options = end === -1 ? args : args.slice(0, end);
  return options.some((arg) => HELP_FLAGS.includes(arg));
}
