/**
 * One "host" of a cluster on a single machine: a service and a `hotpatch agent` started inside a
 * PID namespace of their own (`unshare --pid --mount-proc`), so the agent sees only that host's
 * processes. `sh` is the namespace's init: it starts the service, then the agent, and waits;
 * killing the returned child (`--kill-child`) makes the kernel end everything in the namespace.
 */
import { type ChildProcess, spawn } from "node:child_process";

/** What runs in the namespace. */
export interface NamespacedNode {
  /** The service's program and arguments, started first, in the background. */
  service: string[];
  /** The agent's program and arguments (e.g. node, bin/hotpatch.js, agent, --config, FILE). */
  agent: string[];
  /** A file both append their output to; without one, the child's stdout and stderr are pipes. */
  logFile?: string;
}

export function spawnNamespacedNode(o: NamespacedNode): ChildProcess {
  // Every value is a positional parameter of sh, never part of the script's text.
  const args = [...o.service, ...o.agent, ...(o.logFile ? [o.logFile] : [])];
  const ref = (i: number) => `"\${${i + 1}}"`;
  const words = (from: number, n: number) => Array.from({ length: n }, (_, k) => ref(from + k)).join(" ");
  const log = o.logFile ? ` >>${ref(args.length - 1)} 2>&1` : "";
  const script = `${words(0, o.service.length)}${log} & ${words(o.service.length, o.agent.length)}${log}; wait`;
  return spawn(
    "unshare",
    ["--pid", "--fork", "--kill-child", "--mount-proc", "--", "sh", "-c", script, "sh", ...args],
    {
      stdio: o.logFile ? "ignore" : ["ignore", "pipe", "pipe"],
    },
  );
}
