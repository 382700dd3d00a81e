/**
 * Gate evaluation on heartbeats. Pure: given what the cluster view holds for a node, the soak's
 * baseline and the clock, it says which gates hold. A node never heard, or heard too long ago,
 * fails every gate that needs its heartbeat: missing data is a failure, never a pass.
 */

import { liveness, type NodeView, nodeHealth } from "../cluster/index.js";
import type { Gates, MetricOp } from "./plan_types.js";
import type { GateResult, ServiceBaseline } from "./state_types.js";

/** What the gates of one node are evaluated against. */
export interface GateInput {
  /** Node name. */
  node: string;
  /** Latest view of the node, undefined when never heard. */
  view: NodeView | undefined;
  /** The clock now (ms since epoch). */
  nowMs: number;
  /** When the soak began: gaps before it do not count, and content gates wait for a heartbeat received after it. */
  sinceMs: number;
  /** Services at the start of the soak. */
  baseline: ServiceBaseline[];
  /** Bundle id whose patch must be active. */
  bundleId: string;
}

function compare(a: number, op: MetricOp, b: number): boolean {
  switch (op) {
    case "<":
      return a < b;
    case "<=":
      return a <= b;
    case ">":
      return a > b;
    case ">=":
      return a >= b;
    case "==":
      return a === b;
    case "!=":
      return a !== b;
  }
}

/**
 * Whether the values of metric `name` (`<service>.<metric>`) were read at or before `sinceMs` (our
 * clock). The agent says when by its own clock; the heartbeat's send time on that clock and its
 * arrival on ours carry that onto ours without comparing the two clocks.
 */
function readBefore(view: NodeView, name: string, sinceMs: number): boolean {
  const dot = name.indexOf(".");
  const readAt = dot > 0 ? view.metricsReadAtMs[name.slice(0, dot)] : undefined;
  if (readAt === undefined) return false;
  return view.receivedAtMs - Math.max(0, view.sentAtMs - readAt) <= sinceMs;
}

/** How many results evaluateGates gives for one node once every gate has been evaluated. */
export function gateCount(gates: Gates): number {
  return (
    (gates.heartbeatGap ? 1 : 0) +
    (gates.probes ? 1 : 0) +
    (gates.noRestart ? 1 : 0) +
    (gates.patchActive ? 1 : 0) +
    gates.metrics.length
  );
}

/** Baseline of a node's services from its view (empty when never heard). */
export function baselineOf(view: NodeView | undefined): ServiceBaseline[] {
  return (view?.services ?? []).map((s) => ({ name: s.name, pid: s.pid, startTime: s.startTime }));
}

/** Evaluates every configured gate on one node. */
export function evaluateGates(gates: Gates, input: GateInput): GateResult[] {
  const { node, view, nowMs } = input;
  const out: GateResult[] = [];
  const push = (gate: string, mode: GateResult["mode"], ok: boolean, value: string) =>
    out.push({ gate, node, mode, ok, value });
  const unheard = "no heartbeat received";

  if (gates.heartbeatGap) {
    const g = gates.heartbeatGap;
    if (!view) push("heartbeatGap", g.mode, false, unheard);
    else {
      const live = liveness(view, nowMs);
      const gap = view.gaps.filter((x) => x.atMs >= input.sinceMs).reduce((m, x) => Math.max(m, x.missed), 0);
      const worst = Math.max(live.missedNow, gap);
      push(
        "heartbeatGap",
        g.mode,
        worst <= g.intervals && nodeHealth(view, nowMs, g.intervals).alive,
        `age ${live.ageMs}ms, ${worst} missed (max ${g.intervals} × ${view.intervalMs}ms)`,
      );
    }
  }
  // The other gates read the heartbeat's content, which is stale once the heartbeat gap is exceeded.
  const stale = !view || !nodeHealth(view, nowMs, gates.heartbeatGap?.intervals ?? 3).alive;
  const staleValue = view ? `heartbeat stale (age ${liveness(view, nowMs).ageMs}ms)` : unheard;
  // A heartbeat from before the soak tells nothing about the patch: content gates wait for a newer
  // one (the soak cannot end before they are evaluated, and the gap gate bounds the wait).
  if (!stale && view && view.receivedAtMs <= input.sinceMs) return out;

  if (gates.probes) {
    const g = gates.probes;
    if (stale || !view) push("probes", g.mode, false, staleValue);
    else {
      // Results older than the gap allowance (by the agent's own clock) are a repeat of the last known
      // health, not a fresh check: they do not pass.
      const maxAge = (gates.heartbeatGap?.intervals ?? 3) * Math.max(1, view.intervalMs);
      const old = view.services.filter((s) => s.checkedAtMs > 0 && view.sentAtMs - s.checkedAtMs > maxAge);
      const failing = view.services.filter((s) => !s.healthy);
      const problems = [
        ...failing.map((s) => `${s.name} unhealthy${s.failedProbes.map((p) => ` (${p.name}: ${p.message})`).join("")}`),
        ...old.map((s) => `${s.name} last probed ${view.sentAtMs - s.checkedAtMs}ms before the heartbeat`),
      ];
      push(
        "probes",
        g.mode,
        problems.length === 0,
        problems.length === 0 ? `${view.services.length} service(s) healthy` : problems.join(", "),
      );
    }
  }
  if (gates.noRestart) {
    const g = gates.noRestart;
    if (stale || !view) push("noRestart", g.mode, false, staleValue);
    else {
      const changed: string[] = [];
      for (const b of input.baseline) {
        const now = view.services.find((s) => s.name === b.name);
        if (!now) changed.push(`${b.name} no longer reported`);
        else if (now.pid !== b.pid || now.startTime !== b.startTime) {
          changed.push(`${b.name} restarted (pid ${b.pid}→${now.pid}, start ${b.startTime}→${now.startTime})`);
        }
      }
      push("noRestart", g.mode, changed.length === 0, changed.length === 0 ? "no restart" : changed.join(", "));
    }
  }
  if (gates.patchActive) {
    const g = gates.patchActive;
    if (stale || !view) push("patchActive", g.mode, false, staleValue);
    else {
      const mine = view.patches.filter((p) => p.patchId === input.bundleId);
      const notActive = mine.filter((p) => p.state !== "active");
      const ok = mine.length > 0 && notActive.length === 0;
      push(
        "patchActive",
        g.mode,
        ok,
        mine.length === 0
          ? `${input.bundleId} in no reported process`
          : notActive.length === 0
            ? `active in ${mine.length} process(es)`
            : notActive.map((p) => `pid ${p.pid} ${p.state}`).join(", "),
      );
    }
  }
  for (const m of gates.metrics) {
    const gate = `metric:${m.name}`;
    const value = view?.metrics[m.name];
    // Values read before the soak began say nothing about the patch: the gate waits for a read
    // made since (bounded by the agent's maxAgeMs, after which old values are no longer sent).
    if (view && !stale && value !== undefined && readBefore(view, m.name, input.sinceMs)) continue;
    if (stale || !view) push(gate, m.mode, false, staleValue);
    else if (value === undefined) push(gate, m.mode, false, `${m.name} not reported`);
    else push(gate, m.mode, compare(value, m.op, m.value), `${m.name}=${value} (needs ${m.op} ${m.value})`);
  }
  return out;
}

/** The first enforced gate that failed, if any. */
export function firstEnforcedFailure(results: GateResult[]): GateResult | undefined {
  return results.find((r) => !r.ok && r.mode === "enforce");
}
