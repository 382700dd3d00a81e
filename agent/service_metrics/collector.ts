/**
 * Service metrics for heartbeats. Each source of a service (its /proc process metrics, an HTTP
 * page, a command) is read on its own loop, every `intervalMs`, under its own deadline; a
 * heartbeat takes `snapshot()`, which never waits. A failed read replaces the source's values at
 * once, so stale values are never republished: the heartbeat then lacks them and says
 * `<service>.up.<source> = 0` and `<service>.metrics_up = 0`, and the failure is logged.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { deadlineSignal } from "../../common/index.js";
import type { ScrapeConfig, ServiceConfig } from "../config/types.js";
import { AgentError } from "../errors.js";
import { type MainProcess, ProcMetrics } from "./proc_metrics.js";
import { RESERVED_NAME, scrape } from "./scrape.js";

/** Which source of a service: the built-in /proc metrics, or a scrape. */
export type SourceId = "proc" | ScrapeConfig["kind"];

/** The latest read of one source. */
type Reading =
  | { ok: true; startedAt: number; startedAtEpochMs: number; values: Map<string, number> }
  | { ok: false; startedAt: number; message: string };

/** A service's metrics for one heartbeat. */
export interface MetricsSnapshot {
  /** Metric name (`<service>.<name>`) to value. */
  values: Record<string, number>;
  /** When the oldest read whose values are in `values` started, ms since the epoch; null when no source is up. */
  readAtMs: number | null;
}

/** Where the collector reports: failures and recoveries as log lines, every read as a counted result. */
export interface MetricsReport {
  log(level: "info" | "warn", msg: string, extra: Record<string, unknown>): void;
  read(service: string, source: SourceId, ok: boolean): void;
}

interface Source {
  id: SourceId;
  /** What is read, for messages: the URL, the command, or /proc. */
  what: string;
  timeoutMs: number;
  read(signal: AbortSignal): Promise<Map<string, number>>;
}

/**
 * Runs `work` with a signal that aborts after `ms` or when `outer` does, and rejects then even when
 * `work` ignores it (a /proc read stuck in the kernel). The deadline is common/'s deadlineSignal,
 * not AbortSignal.any over AbortSignal.timeout (which Node 20 can collect before it fires).
 */
async function withDeadline<T>(
  what: string,
  work: (signal: AbortSignal) => Promise<T>,
  ms: number,
  outer: AbortSignal,
): Promise<T> {
  const deadline = deadlineSignal(ms, outer);
  const aborted = new Promise<never>((_, reject) => {
    const fail = () =>
      reject(
        outer.aborted
          ? new AgentError("ESCRAPE", `${what}: cancelled, the agent is stopping`)
          : new AgentError("ESCRAPE", `${what}: no result within ${ms} ms`),
      );
    if (deadline.signal.aborted) fail();
    else deadline.signal.addEventListener("abort", fail, { once: true });
  });
  aborted.catch(() => undefined);
  try {
    return await Promise.race([work(deadline.signal), aborted]);
  } finally {
    deadline.dispose();
  }
}

export class ServiceMetrics {
  private readonly sources: Source[] = [];
  private readonly readings = new Map<SourceId, Reading>();
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  private readonly duplicatesLogged = new Set<string>();

  constructor(
    private readonly svc: ServiceConfig,
    /** The service's main process now (from its health watch), or null when none runs. */
    main: () => MainProcess | null,
    private readonly report: MetricsReport,
  ) {
    const m = svc.metrics;
    if (m.process) {
      const proc = new ProcMetrics();
      // A /proc read takes about a millisecond; a busy host can hold the agent up longer than a short interval.
      const timeoutMs = Math.min(Math.max(m.intervalMs, 1000), 5000);
      this.sources.push({ id: "proc", what: "/proc", timeoutMs, read: () => proc.read(main()) });
    }
    for (const s of m.scrapes) {
      const what = s.kind === "http" ? s.url : s.argv.join(" ");
      this.sources.push({ id: s.kind, what, timeoutMs: s.timeoutMs, read: (sig) => scrape(s, sig) });
    }
  }

  /** Name of the service whose metrics these are. */
  get service(): string {
    return this.svc.name;
  }

  /** Starts every source's loop (idempotent). */
  start(): void {
    if (this.loops.length > 0 || this.abort.signal.aborted) return;
    this.loops = this.sources.map((s) => this.loop(s));
  }

  /** Stops every loop, cancelling reads in flight, and waits for them. */
  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.all(this.loops);
  }

  private async loop(src: Source): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const startedAt = performance.now();
      // By the same clock as the heartbeat's timestamp, which readers compare it with.
      const startedAtEpochMs = Date.now();
      let reading: Reading;
      try {
        const values = await withDeadline(src.what, (sig) => src.read(sig), src.timeoutMs, signal);
        reading = { ok: true, startedAt, startedAtEpochMs, values };
      } catch (err) {
        reading = { ok: false, startedAt, message: (err as Error).message };
      }
      if (signal.aborted) return;
      this.record(src.id, reading);
      const wait = this.svc.metrics.intervalMs - (performance.now() - startedAt);
      await sleep(Math.max(0, wait), undefined, { signal }).catch(() => undefined);
    }
  }

  private record(id: SourceId, reading: Reading): void {
    const before = this.readings.get(id);
    this.readings.set(id, reading);
    this.report.read(this.svc.name, id, reading.ok);
    const extra = { service: this.svc.name, source: id };
    if (!reading.ok && (before === undefined || before.ok || before.message !== reading.message)) {
      this.report.log(
        "warn",
        `metrics of ${this.svc.name} from ${id} failed; its values are left out of heartbeats: ${reading.message}`,
        extra,
      );
    } else if (reading.ok && before && !before.ok) {
      this.report.log("info", `metrics of ${this.svc.name} from ${id} are back`, extra);
    }
  }

  /**
   * The service's metrics now, keyed `<service>.<name>`: every source's values from a read that
   * succeeded and started at most `maxAgeMs` ago, `<service>.up.<source>` (1 when so, else 0), and
   * `<service>.metrics_up` (1 when every source is up). A name two sources both report is left out.
   * `readAtMs` is when the oldest of those reads started (ms since the epoch), null when none is up.
   */
  snapshot(nowMs = performance.now()): MetricsSnapshot {
    if (this.sources.length === 0) return { values: {}, readAtMs: null };
    const svc = this.svc.name;
    const out: Record<string, number> = {};
    const fresh: Map<string, number>[] = [];
    let oldest = Number.POSITIVE_INFINITY;
    for (const src of this.sources) {
      const r = this.readings.get(src.id);
      const up = r?.ok === true && nowMs - r.startedAt <= this.svc.metrics.maxAgeMs;
      out[`${svc}.up.${src.id}`] = up ? 1 : 0;
      if (up) {
        fresh.push(r.values);
        oldest = Math.min(oldest, r.startedAtEpochMs);
      }
    }
    const count = new Map<string, number>();
    for (const values of fresh) for (const k of values.keys()) count.set(k, (count.get(k) ?? 0) + 1);
    for (const values of fresh) {
      for (const [k, v] of values) {
        if (count.get(k) === 1) out[`${svc}.${k}`] = v;
        else if (!this.duplicatesLogged.has(k)) {
          this.duplicatesLogged.add(k);
          this.report.log("warn", `metric ${k} of ${svc} comes from both http and exec; it is left out`, {
            service: svc,
          });
        }
      }
    }
    out[`${svc}.${RESERVED_NAME}`] = fresh.length === this.sources.length ? 1 : 0;
    return {
      values: out,
      readAtMs: fresh.length > 0 ? oldest : null,
    };
  }
}

/** Every service's metrics for a heartbeat, with each service's read time (services with values only). */
export function heartbeatMetrics(services: readonly ServiceMetrics[]): {
  metrics: Record<string, number>;
  metricsReadAtMs: Record<string, number>;
} {
  const metrics: Record<string, number> = {};
  const metricsReadAtMs: Record<string, number> = {};
  for (const s of services) {
    const { values, readAtMs } = s.snapshot();
    Object.assign(metrics, values);
    if (readAtMs !== null) metricsReadAtMs[s.service] = readAtMs;
  }
  return { metrics, metricsReadAtMs };
}
