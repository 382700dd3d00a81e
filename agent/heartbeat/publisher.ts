/**
 * Publishes a Heartbeat every interval on a fixed schedule (a late beat does not shift the next
 * ones), plus one at once when asked (`beatNow`, on a role change, so that readers need not wait up
 * to an interval to learn it). The sequence counts every beat, sent or skipped, so a reader sees a
 * gap when beats were skipped while NATS was unreachable; a skipped beat is not queued and replayed later.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Heartbeat } from "../../proto/index.js";
import type { AgentMetrics } from "../metrics/metrics.js";

/** Fills the parts of a heartbeat that change: role, health, patches, load. */
export type HeartbeatContent = () => Omit<
  Heartbeat,
  "cluster" | "pair" | "node" | "sequence" | "timestampMs" | "intervalMs" | "runId"
>;

export class HeartbeatPublisher {
  private sequence = 0;
  private timer: NodeJS.Timeout | null = null;
  private connected = true;
  private next = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
    private readonly id: { cluster: string; pair: string; node: string },
    private readonly intervalMs: number,
    private readonly content: HeartbeatContent,
    private readonly metrics: AgentMetrics,
    /** Random id of this agent run. */
    readonly runId: string,
  ) {}

  start(): void {
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === "disconnect") this.connected = false;
        else if (s.type === "reconnect") this.connected = true;
      }
    })();
    this.next = performance.now();
    this.beat();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Publishes a beat now, off the schedule (which stays as it was). */
  beatNow(): void {
    if (this.timer) this.publish();
  }

  private beat(): void {
    const lag = performance.now() - this.next;
    this.metrics.heartbeatLagMs.set(Math.max(0, lag));
    this.publish();
    this.next += this.intervalMs;
    // After a long stall (a suspended process), restart the schedule rather than firing a burst.
    if (this.next < performance.now()) this.next = performance.now() + this.intervalMs;
    this.timer = setTimeout(() => this.beat(), this.next - performance.now());
  }

  private publish(): void {
    this.sequence += 1;
    if (this.connected && !this.nc.isClosed()) {
      const hb = Heartbeat.fromPartial({
        ...this.content(),
        ...this.id,
        sequence: this.sequence,
        timestampMs: Date.now(),
        intervalMs: this.intervalMs,
        runId: this.runId,
      });
      try {
        this.nc.publish(this.subject, Heartbeat.encode(hb).finish());
        this.metrics.heartbeats.inc({ result: "published" });
      } catch {
        this.metrics.heartbeats.inc({ result: "skipped" });
      }
    } else {
      this.metrics.heartbeats.inc({ result: "skipped" });
    }
  }
}
