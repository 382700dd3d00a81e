/** Host load for heartbeats, from /proc/loadavg and /proc/meminfo. */
import { readFile } from "node:fs/promises";

/** 1-minute load average and the fraction of memory in use. */
export async function readLoad(): Promise<{ load1: number; memoryUsed: number }> {
  const [loadavg, meminfo] = await Promise.all([readFile("/proc/loadavg", "utf8"), readFile("/proc/meminfo", "utf8")]);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(meminfo)?.[1] ?? Number.NaN);
  const total = field("MemTotal");
  const available = field("MemAvailable");
  const memoryUsed = total > 0 && Number.isFinite(available) ? 1 - available / total : 0;
  return { load1: Number(loadavg.split(" ")[0]) || 0, memoryUsed };
}
