/** Finds and kills a process on this host, only when it is the very process a heartbeat named (pid and start time). */
import { readFile } from "node:fs/promises";
import { DrillError } from "./errors.js";

/** Field 22 of /proc/PID/stat (start time, clock ticks since boot), or null when the process is gone. */
async function startTimeOf(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const v = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * SIGKILLs `pid` after checking that it runs here with `startTime` (so a reused pid or a process
 * on another host is never hit) and that it is not this process. Throws ENOT_LOCAL otherwise.
 */
export async function killExactProcess(what: string, pid: number, startTime: number): Promise<void> {
  if (pid === process.pid) {
    throw new DrillError("ENOT_LOCAL", `${what} is this very process (pid ${pid}); run agents in their own processes`, {
      pid,
    });
  }
  const st = await startTimeOf(pid);
  if (st === null || (startTime !== 0 && st !== startTime)) {
    throw new DrillError(
      "ENOT_LOCAL",
      `${what} (pid ${pid}, start time ${startTime}) does not run on this host${st === null ? "" : ` (pid ${pid} is another process, start time ${st})`}: run the drill on the node's host`,
      { pid, startTime, found: st },
    );
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch (cause) {
    throw new DrillError(
      "ENOT_LOCAL",
      `cannot kill ${what} (pid ${pid}): ${(cause as Error).message}`,
      { pid },
      { cause },
    );
  }
}
