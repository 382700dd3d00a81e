/**
 * Built-in metrics of a service's main process, read from /proc: resident memory, CPU usage as a
 * rate, threads and open file descriptors. The CPU rate needs two readings of the same process
 * (same pid and start time), so the first reading of a process has no `cpu_usage`.
 */
import { readdir, readFile } from "node:fs/promises";
import { AgentError } from "../errors.js";

/** The process a service's metrics are about. */
export interface MainProcess {
  /** Process id. */
  pid: number;
  /** Start time (clock ticks since boot), so a reused pid is never taken for the same process. */
  startTime: number;
}

/** Clock ticks per second of /proc/PID/stat times: USER_HZ, fixed at 100 on Linux x86-64. */
const TICKS_PER_SECOND = 100;

/** The numbers of one /proc reading. */
export interface ProcReading {
  /** Start time from /proc/PID/stat. */
  startTime: number;
  /** utime + stime, clock ticks. */
  cpuTicks: number;
  /** Threads (Threads: in /proc/PID/status). */
  threads: number;
  /** Resident set size, bytes (VmRSS: in /proc/PID/status). */
  rssBytes: number;
  /** Entries of /proc/PID/fd. */
  openFds: number;
}

/** Reads /proc/PID/{stat,status,fd}; throws ESCRAPE when the process is gone or unreadable. */
export async function readProc(pid: number): Promise<ProcReading> {
  let stat: string;
  let status: string;
  let fds: string[];
  try {
    [stat, status, fds] = await Promise.all([
      readFile(`/proc/${pid}/stat`, "utf8"),
      readFile(`/proc/${pid}/status`, "utf8"),
      readdir(`/proc/${pid}/fd`),
    ]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new AgentError(
      "ESCRAPE",
      e.code === "ENOENT"
        ? `process ${pid} exited`
        : `cannot read /proc/${pid} (${e.code ?? e.message}; the agent needs root or CAP_SYS_PTRACE to read another user's fds)`,
      { pid },
      { cause: err },
    );
  }
  // Fields after the command name, which may itself hold spaces and parentheses; field 3 is index 0.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const field = (n: number) => Number(f[n - 3]);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN);
  const reading: ProcReading = {
    startTime: field(22),
    cpuTicks: field(14) + field(15),
    threads: kb("Threads"),
    // Kernel threads and zombies have no VmRSS line: no memory of their own.
    rssBytes: /^VmRSS:/m.test(status) ? kb("VmRSS") * 1024 : 0,
    openFds: fds.length,
  };
  for (const [k, v] of Object.entries(reading)) {
    if (!Number.isFinite(v)) throw new AgentError("ESCRAPE", `cannot parse ${k} of process ${pid} from /proc`, { pid });
  }
  return reading;
}

/** Reads a service's main process each time it is asked and turns consecutive readings into rates. */
export class ProcMetrics {
  private last: { pid: number; startTime: number; cpuTicks: number; atMs: number } | null = null;

  /** Metric names (without the service prefix) to values; throws ESCRAPE when there is no process to read. */
  async read(main: MainProcess | null): Promise<Map<string, number>> {
    if (!main) throw new AgentError("ESCRAPE", "no process of the service runs");
    const r = await readProc(main.pid);
    const atMs = performance.now();
    if (r.startTime !== main.startTime) {
      throw new AgentError(
        "ESCRAPE",
        `process ${main.pid} was replaced (start time ${main.startTime} -> ${r.startTime})`,
        { pid: main.pid },
      );
    }
    const out = new Map<string, number>([
      ["proc.rss_bytes", r.rssBytes],
      ["proc.threads", r.threads],
      ["proc.open_fds", r.openFds],
    ]);
    const prev = this.last;
    if (prev && prev.pid === main.pid && prev.startTime === r.startTime && atMs > prev.atMs) {
      out.set("proc.cpu_usage", (r.cpuTicks - prev.cpuTicks) / TICKS_PER_SECOND / ((atMs - prev.atMs) / 1000));
    }
    this.last = { pid: main.pid, startTime: r.startTime, cpuTicks: r.cpuTicks, atMs };
    return out;
  }
}
