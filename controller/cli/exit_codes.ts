/** Exit codes of the `hotpatch` command. Documented in `hotpatch --help` and the README; stable. */
export const ExitCode = {
  /** Everything asked for was done. */
  Ok: 0,
  /** The operation ran and failed (a target error, a failed gate, ...). */
  Failed: 1,
  /** The command line was wrong. */
  Usage: 2,
  /** hotpatch itself is broken or not built. */
  Internal: 70,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
