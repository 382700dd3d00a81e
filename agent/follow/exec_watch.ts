/** Delivers every exec on the host to the agent, with the exec's time in performance.now() terms. */
import { monotonicMs, watchExecs } from "../../native/index.js";

/** A running exec watch. */
export interface ExecWatch {
  stop(): void;
}

/** Calls `onExec(pid, execAt)` for each exec; `execAt` is on the performance.now() clock. Throws without CAP_NET_ADMIN. */
export function startExecWatch(onExec: (pid: number, execAt: number) => void): ExecWatch {
  return watchExecs((e) => onExec(e.pid, performance.now() - (monotonicMs() - e.execMonoMs)));
}
