/**
 * Launchers that run a command as root without some or all capabilities. Tests of refusals use
 * these instead of another user: root keeps owner access to a clone in a 0700 folder (under /root,
 * or made by mktemp -d), which an unprivileged user could not even enter.
 */

/** A `setpriv` prefix that runs its command without the named capabilities (e.g. "sys_ptrace"), or without any. */
export function withoutCapabilities(caps: "all" | string[]): string[] {
  const list = caps === "all" ? "-all" : caps.map((c) => `-${c}`).join(",");
  // Root regains every capability in its bounding set at exec, so the bounding set is what counts.
  return ["setpriv", `--bounding-set=${list}`, `--inh-caps=${list}`];
}
