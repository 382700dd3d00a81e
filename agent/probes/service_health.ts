/**
 * Health of the watched services: the main process (oldest match of the service's selector) must be
 * alive with the start time it had when first seen; a changed start time is a restart, reported
 * once as unhealthy before the new process is followed. A zombie (a crashed process its parent has
 * not reaped: a node whose init does not reap) has exited, whatever its pid and start time say.
 * Extra probes run in parallel.
 */
import type { ServiceConfig } from "../config/types.js";
import { type BuildIdCache, isDeadState, readStateAndStartTime, selectProcesses } from "../procfs/processes.js";
import { type ProbeOutcome, runProbe } from "./probes.js";

/** Health of one service at one moment. */
export interface ServiceHealthNow {
  /** Service name. */
  name: string;
  /** Every check passed. */
  healthy: boolean;
  /** Main process (0 when none runs). */
  pid: number;
  /** Its start time, clock ticks since boot. */
  startTime: number;
  /** Each check: the process check first, then the configured probes. */
  probes: ProbeOutcome[];
  /** When the checks finished, ms since the Unix epoch. */
  checkedAtMs: number;
}

export class ServiceWatch {
  private main: { pid: number; startTime: number } | null = null;

  constructor(
    private readonly svc: ServiceConfig,
    private readonly ids: BuildIdCache,
  ) {}

  private async processCheck(): Promise<ProbeOutcome> {
    const t0 = performance.now();
    const done = (ok: boolean, message: string): ProbeOutcome => ({
      name: "process",
      ok,
      latencyMs: Math.round(performance.now() - t0),
      message,
    });
    if (this.main) {
      const now = await readStateAndStartTime(this.main.pid);
      if (now?.startTime === this.main.startTime && !isDeadState(now.state)) return done(true, "");
      const was = this.main;
      this.main = null;
      if (now === null) return done(false, `process ${was.pid} exited`);
      if (now.startTime !== was.startTime)
        return done(false, `process ${was.pid} was replaced (start time ${was.startTime} -> ${now.startTime})`);
      return done(false, `process ${was.pid} exited (state ${now.state}: a zombie its parent has not reaped)`);
    }
    const found = await selectProcesses(this.svc.process, this.ids).catch(() => []);
    const oldest = found.sort((a, b) => a.startTime - b.startTime || a.pid - b.pid)[0];
    if (!oldest) return done(false, "no matching process runs");
    this.main = { pid: oldest.pid, startTime: oldest.startTime };
    return done(true, "");
  }

  /** The main process as of the last check, or null when none runs (or none was found yet). */
  mainProcess(): { pid: number; startTime: number } | null {
    return this.main ? { ...this.main } : null;
  }

  /** Runs every check once. */
  async check(): Promise<ServiceHealthNow> {
    const [proc, ...probes] = await Promise.all([this.processCheck(), ...this.svc.probes.map(runProbe)]);
    const all = [proc as ProbeOutcome, ...probes];
    return {
      name: this.svc.name,
      healthy: all.every((p) => p.ok),
      checkedAtMs: Date.now(),
      pid: this.main?.pid ?? 0,
      startTime: this.main?.startTime ?? 0,
      probes: all,
    };
  }
}
