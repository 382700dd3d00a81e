/** Exit codes of the `hotpatch` command. Documented in `hotpatch --help` and the README; stable. */
export const ExitCode = {
  /** Everything asked for was done. */
  Ok: 0,
  /** The operation ran and failed (a target error, a failed gate, ...). */
  Failed: 1,
  /** The command line was wrong (for rollouts also: the plan is invalid). */
  Usage: 2,
  /** Another controller holds the cluster's rollout lease (or this one lost it). */
  LeaseHeld: 3,
  /** The rollout was aborted (by `rollout abort` or its progress deadline) and rolled back. */
  Aborted: 4,
  /** The rollout is paused (by `rollout pause`, Ctrl-C, or the `pause` failure policy). */
  Paused: 5,
  /** hotpatch itself is broken or not built. */
  Internal: 70,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
