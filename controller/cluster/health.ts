/**
 * Judging nodes and pairs from their heartbeats, once for every reader: drills, the rollout's
 * pre-check and discovery, soak gates and `cluster status` all ask here whether a node is alive and
 * a pair is healthy.
 */
import type { Liveness, NodeView, ServiceView } from "./types.js";

/**
 * A beat counts as missed once it is this fraction of an interval overdue: timers, the network and a
 * busy reader all add jitter, and a beat 2 ms late is not a missed one.
 */
const MISSED_GRACE = 0.5;

/** Liveness of a node at `nowMs`. */
export function liveness(node: NodeView, nowMs: number): Liveness {
  const ageMs = Math.max(0, nowMs - node.receivedAtMs);
  const interval = node.intervalMs > 0 ? node.intervalMs : 1000;
  return { ageMs, missedNow: Math.max(0, Math.floor(ageMs / interval - MISSED_GRACE)) };
}

/**
 * A node counts as alive while its last heartbeat is at most this many intervals old, unless the
 * caller allows more (a rollout allows its plan's heartbeat gap).
 */
export const ALIVE_INTERVALS = 2;

/** One node as judged at one moment. */
export interface NodeHealth {
  /** Its last heartbeat is recent enough. */
  alive: boolean;
  /** Milliseconds since its last heartbeat was received. */
  ageMs: number;
  /** Beats overdue by now (see `Liveness.missedNow`). */
  missedNow: number;
  /** Its services whose probes failed. */
  sick: ServiceView[];
}

/** Judges `n` at `nowMs` (the view's clock), alive while its heartbeat is at most `allowedIntervals` intervals old. */
export function nodeHealth(n: NodeView, nowMs: number, allowedIntervals = ALIVE_INTERVALS): NodeHealth {
  const { ageMs, missedNow } = liveness(n, nowMs);
  return {
    alive: ageMs <= allowedIntervals * Math.max(1, n.intervalMs),
    ageMs,
    missedNow,
    sick: n.services.filter((s) => !s.healthy),
  };
}

/** A pair: healthy with its active and standby node, or what is wrong with it. */
export type PairJudgement =
  | { kind: "healthy"; active: NodeView; standby: NodeView; intervalMs: number }
  | { kind: "unhealthy"; problems: string[] };

/** Judges the nodes of one pair at `nowMs`: healthy means exactly one active and one standby, both alive, every service healthy. */
export function judgePair(nodes: NodeView[], nowMs: number, allowedIntervals = ALIVE_INTERVALS): PairJudgement {
  const problems: string[] = [];
  if (nodes.length !== 2) problems.push(`the pair has ${nodes.length} node(s) heartbeating, not 2`);
  for (const n of nodes) {
    const h = nodeHealth(n, nowMs, allowedIntervals);
    if (!h.alive) problems.push(`${n.node}: last heartbeat ${h.ageMs} ms ago (interval ${n.intervalMs} ms)`);
    if (n.role === "unknown") problems.push(`${n.node}: role unknown`);
    for (const s of h.sick) {
      const why = s.failedProbes.map((p) => `${p.name}: ${p.message}`).join("; ");
      problems.push(`${n.node}: service ${s.name} unhealthy${why ? ` (${why})` : ""}`);
    }
  }
  const active = nodes.filter((n) => n.role === "active");
  const standby = nodes.filter((n) => n.role === "standby");
  if (active.length !== 1)
    problems.push(`${active.length} active node(s)${active.length ? `: ${active.map((n) => n.node).join(", ")}` : ""}`);
  if (standby.length !== 1) problems.push(`${standby.length} standby node(s)`);
  const [a] = active;
  const [s] = standby;
  if (problems.length > 0 || !a || !s) return { kind: "unhealthy", problems };
  return { kind: "healthy", active: a, standby: s, intervalMs: Math.max(a.intervalMs, s.intervalMs) };
}
