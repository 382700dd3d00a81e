/**
 * Follows the pair peer's heartbeats (`hotpatch.hb.<cluster>.<pair>.*`, every node but this one)
 * and reports the peer lost after `lossBeats` intervals without one, and seen again when it returns.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { Heartbeat, pairHeartbeatSubjects } from "../../proto/index.js";
import type { AgentMetrics } from "../metrics/metrics.js";

/** What the watch knows about the peer. */
export type PeerState =
  | { kind: "never-seen" }
  | { kind: "alive"; node: string; last: Heartbeat; seenAt: number }
  | { kind: "lost"; node: string; last: Heartbeat; seenAt: number };

export class PeerWatch {
  private state: PeerState = { kind: "never-seen" };
  private sub: Subscription | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly id: { cluster: string; pair: string; node: string },
    private readonly intervalMs: number,
    private readonly lossBeats: number,
    private readonly metrics: AgentMetrics,
    private readonly onChange: (s: PeerState) => void,
  ) {}

  get peer(): PeerState {
    return this.state;
  }

  start(): void {
    this.sub = this.nc.subscribe(pairHeartbeatSubjects(this.id.cluster, this.id.pair), {
      callback: (err, msg) => {
        if (err) return;
        let hb: Heartbeat;
        try {
          hb = Heartbeat.decode(msg.data);
        } catch {
          return;
        }
        if (hb.node === this.id.node) return;
        const was = this.state.kind;
        this.state = { kind: "alive", node: hb.node, last: hb, seenAt: performance.now() };
        if (was !== "alive") this.onChange(this.state);
      },
    });
    this.timer = setInterval(() => this.check(), this.intervalMs);
  }

  private check(): void {
    const s = this.state;
    if (s.kind === "never-seen") {
      this.metrics.peerAgeMs.set(-1);
      return;
    }
    const age = performance.now() - s.seenAt;
    this.metrics.peerAgeMs.set(age);
    const limit = this.lossBeats * Math.max(this.intervalMs, s.last.intervalMs || this.intervalMs);
    if (s.kind === "alive" && age > limit) {
      this.state = { kind: "lost", node: s.node, last: s.last, seenAt: s.seenAt };
      this.metrics.peerLost.inc();
      this.onChange(this.state);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.sub?.unsubscribe();
  }
}
