/** Judges a pair from its nodes' latest heartbeats: healthy means exactly one active and one standby, both heartbeating, every service healthy. */
import { liveness, type NodeView } from "../cluster/index.js";

/** A node counts as alive while its last heartbeat is at most this many intervals old. */
export const ALIVE_BEATS = 2;

/** The pair as a drill sees it. */
export type PairJudgement =
  | { kind: "healthy"; active: NodeView; standby: NodeView; intervalMs: number }
  | { kind: "unhealthy"; problems: string[] };

/** Whether `n` heartbeated within ALIVE_BEATS intervals of `nowMs`. */
export function isAlive(n: NodeView, nowMs: number): boolean {
  return liveness(n, nowMs).ageMs <= ALIVE_BEATS * Math.max(1, n.intervalMs);
}

/** Judges the nodes of one pair at `nowMs` (the view's clock). */
export function judgePair(nodes: NodeView[], nowMs: number): PairJudgement {
  const problems: string[] = [];
  if (nodes.length !== 2) problems.push(`the pair has ${nodes.length} node(s) heartbeating, not 2`);
  for (const n of nodes) {
    const age = liveness(n, nowMs).ageMs;
    if (!isAlive(n, nowMs)) problems.push(`${n.node}: last heartbeat ${age} ms ago (interval ${n.intervalMs} ms)`);
    if (n.role === "unknown") problems.push(`${n.node}: role unknown`);
    for (const s of n.services.filter((s) => !s.healthy)) {
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
