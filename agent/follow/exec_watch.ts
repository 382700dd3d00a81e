/**
 * Delivers every exec the agent can see, with the exec's time in performance.now() terms: the
 * kernel's exec events when the agent runs in the initial PID and user namespaces, else a scan of
 * its own /proc (the kernel reports exec events with pids of the initial namespace, which an agent
 * in a PID namespace of its own cannot see, and ignores listen requests from other namespaces).
 */
import { stat } from "node:fs/promises";
import { monotonicMs, watchExecs } from "../../native/index.js";
import { listPids, readStartTime } from "../procfs/processes.js";

/** Inode numbers the kernel gives its initial PID and user namespaces (PROC_PID_INIT_INO, PROC_USER_INIT_INO). */
const INIT_PID_NS_INO = 0xeffffffc;
const INIT_USER_NS_INO = 0xeffffffd;

/** How often /proc is scanned when exec events cannot be used, ms. */
export const PROC_SCAN_INTERVAL_MS = 50;

/** How the agent learns of new processes. */
export type ExecWatchMode =
  /** The kernel's process-event connector: every exec on the host, at once. */
  | { kind: "exec-events" }
  /** A scan of the agent's own /proc every `intervalMs`; `reason` says why exec events are not used. */
  | { kind: "proc-scan"; intervalMs: number; reason: string };

/** A running exec watch. */
export interface ExecWatch {
  readonly mode: ExecWatchMode;
  stop(): void;
}

type OnExec = (pid: number, execAt: number) => void;

/** Why exec events cannot reach this process, or null when they can (it is in the initial namespaces). */
export async function whyNoExecEvents(): Promise<string | null> {
  const ino = async (ns: string) => (await stat(`/proc/self/ns/${ns}`)).ino;
  if ((await ino("pid")) !== INIT_PID_NS_INO)
    return "the agent runs in a PID namespace of its own: the kernel's exec events carry pids of the initial namespace, which it cannot see";
  if ((await ino("user")) !== INIT_USER_NS_INO)
    return "the agent runs in a user namespace of its own: the kernel sends exec events only to the initial one";
  return null;
}

/**
 * Starts watching: exec events when they can work, else a /proc scan (never nothing, never
 * silently: `mode` says which and why).
 */
export async function startExecWatch(onExec: OnExec): Promise<ExecWatch> {
  let reason = await whyNoExecEvents().catch((err: Error) => `cannot read /proc/self/ns: ${err.message}`);
  if (reason === null) {
    try {
      const w = watchExecs((e) => onExec(e.pid, performance.now() - (monotonicMs() - e.execMonoMs)));
      return { mode: { kind: "exec-events" }, stop: () => w.stop() };
    } catch (err) {
      reason = `the kernel's exec events are not available: ${(err as Error).message}`;
    }
  }
  return startProcScan(onExec, reason);
}

/** Identity of what a pid runs: start time (a reused pid) and executable file (an exec); "" when unreadable. */
async function identity(pid: number): Promise<string> {
  const [st, exe] = await Promise.all([readStartTime(pid), stat(`/proc/${pid}/exe`).catch(() => null)]);
  if (st === null || exe === null) return "";
  return `${st}:${exe.dev}:${exe.ino}`;
}

/** Scans /proc every PROC_SCAN_INTERVAL_MS; a new pid, or a pid now running another file, is an exec. */
async function startProcScan(onExec: OnExec, reason: string): Promise<ExecWatch> {
  const known = new Map<number, string>();
  const scan = async (report: boolean, since: number) => {
    const seen = new Set<number>();
    for (const pid of await listPids().catch(() => [])) {
      seen.add(pid);
      const id = await identity(pid);
      // An unreadable one (a kernel thread, a zombie, one exiting) is looked at again next time.
      if (id === "" || known.get(pid) === id) continue;
      known.set(pid, id);
      // The exec happened since the previous scan; when is not known more precisely.
      if (report) onExec(pid, since);
    }
    for (const pid of known.keys()) if (!seen.has(pid)) known.delete(pid);
  };
  let last = performance.now();
  await scan(false, last);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    const since = last;
    last = performance.now();
    void scan(true, since).finally(() => {
      if (!stopped) timer = setTimeout(tick, PROC_SCAN_INTERVAL_MS).unref();
    });
  };
  timer = setTimeout(tick, PROC_SCAN_INTERVAL_MS).unref();
  return {
    mode: { kind: "proc-scan", intervalMs: PROC_SCAN_INTERVAL_MS, reason },
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
