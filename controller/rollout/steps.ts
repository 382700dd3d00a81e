/** The exact steps of a rollout: the stages (canary, waves) and the step sequence inside each pair. */
import type { Order, Plan } from "./plan_types.js";

/** One step inside a pair. Which node a patch step touches is decided from roles read just before it. */
export type PairStep =
  /** Both nodes heard recently, healthy, and one active and one standby. */
  | { kind: "check" }
  /** Upload the bundle to both agents (idempotent: an already staged bundle is not written again). */
  | { kind: "stage" }
  /** Apply on the node that is standby now (first patch of the pair). */
  | { kind: "patch-standby" }
  /** Apply on the node of the pair this rollout has not patched yet. */
  | { kind: "patch-remaining" }
  /** Make the patched standby active and the unpatched active standby. */
  | { kind: "switchover" }
  /** Watch the gates on the patched nodes' heartbeats for `ms`. */
  | { kind: "soak"; ms: number };

/** A group of pairs rolled together. */
export interface Stage {
  /** "canary", "wave 1", "wave 2", ... */
  name: string;
  /** Pairs of the stage, in order. */
  pairs: string[];
  /** Pairs worked on at the same time. */
  maxParallel: number;
  /** Soak of each soak step. */
  soakMs: number;
}

/** The steps of one pair for an order and a soak. */
export function pairSteps(order: Order, soakMs: number): PairStep[] {
  const soak = { kind: "soak", ms: soakMs } as const;
  if (order === "switchover") {
    return [
      { kind: "check" },
      { kind: "stage" },
      { kind: "patch-standby" },
      { kind: "switchover" },
      soak,
      { kind: "patch-remaining" },
      soak,
    ];
  }
  return [{ kind: "check" }, { kind: "stage" }, { kind: "patch-standby" }, soak, { kind: "patch-remaining" }, soak];
}

/** Splits the pairs into the canary stage and the waves. `pairs` must be sorted and de-duplicated. */
export function planStages(plan: Plan, pairs: string[]): Stage[] {
  const canaryPairs = Array.isArray(plan.canary.pairs)
    ? plan.canary.pairs.filter((p) => pairs.includes(p))
    : pairs.slice(0, plan.canary.pairs);
  const rest = pairs.filter((p) => !canaryPairs.includes(p));
  const stages: Stage[] = [];
  if (canaryPairs.length > 0) {
    stages.push({ name: "canary", pairs: canaryPairs, maxParallel: 1, soakMs: plan.canary.soakMs });
  }
  for (let i = 0; i < rest.length; i += plan.waves.size) {
    stages.push({
      name: `wave ${i / plan.waves.size + 1}`,
      pairs: rest.slice(i, i + plan.waves.size),
      maxParallel: plan.waves.maxParallel,
      soakMs: plan.waves.soakMs,
    });
  }
  return stages;
}

/** One line describing a step, as dry-run and progress print it. */
export function describeStep(step: PairStep, bundleId: string): string {
  switch (step.kind) {
    case "check":
      return "check both nodes: fresh heartbeats, services healthy, one active and one standby";
    case "stage":
      return `stage bundle ${bundleId} on both nodes`;
    case "patch-standby":
      return `apply ${bundleId} on the standby node (roles re-read first)`;
    case "patch-remaining":
      return `apply ${bundleId} on the other node (roles re-read first)`;
    case "switchover":
      return "switch roles: demote the unpatched active, promote the patched standby; wait for heartbeats to agree";
    case "soak":
      return `soak ${step.ms} ms while the gates hold on the patched nodes' heartbeats`;
  }
}
