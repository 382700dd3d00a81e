/** A validated rollout plan. Durations are milliseconds; paths are absolute. */
import type { AgentEndpoints, TargetSelector } from "../agents/index.js";

export type { AgentEndpoints, AgentSecurity, TargetSelector } from "../agents/index.js";

/** Whether a failing gate stops the rollout (`enforce`) or is only recorded (`observe`). */
export type GateMode = "enforce" | "observe";

/** Fails when a node's heartbeats stop for more than `intervals` of its announced interval. */
export interface HeartbeatGapGate {
  mode: GateMode;
  /** Allowed missed intervals (an age of more than intervals × interval fails). */
  intervals: number;
}

/** A gate with no parameters (probes, noRestart, patchActive). */
export interface PlainGate {
  mode: GateMode;
}

/** Comparison of a metric against its threshold. */
export type MetricOp = "<" | "<=" | ">" | ">=" | "==" | "!=";

/** A service metric from the heartbeat that must satisfy `value op threshold`. */
export interface MetricGate {
  mode: GateMode;
  /** Metric name as the agent reports it in Heartbeat.metrics. */
  name: string;
  /** How the reported value must compare to `value`. */
  op: MetricOp;
  /** The threshold. */
  value: number;
}

/** The gates evaluated on the heartbeats of the nodes a rollout patched; null turns a gate off. */
export interface Gates {
  /** No heartbeat gap over N intervals. */
  heartbeatGap: HeartbeatGapGate | null;
  /** Every watched service passes its probes. */
  probes: PlainGate | null;
  /** No watched service restarted (pid and start time unchanged since the soak began). */
  noRestart: PlainGate | null;
  /** The patch is reported active in every process that carries it, and in at least one. */
  patchActive: PlainGate | null;
  /** Thresholds on service metrics. */
  metrics: MetricGate[];
}

/** Order of the steps inside a pair. */
export type Order =
  /** Patch the standby, soak, patch the active, soak. */
  | "standby-first"
  /** Patch the standby, swap roles, soak, patch the old active, soak. */
  | "switchover";

/** What a failed gate does. */
export type FailurePolicy =
  /** Revert what this rollout patched on the failing pair, stop. */
  | "rollback-pair"
  /** Revert everything this rollout patched, stop. */
  | "rollback-all"
  /** Stop where it is; `hotpatch rollout resume ID` goes on. */
  | "pause";

/** One stage of the rollout: the canary, or the waves. */
export interface CanaryStage {
  /** Pair names, or how many pairs (taken in name order) make the canary. */
  pairs: string[] | number;
  /** Soak after each patch step of a canary pair. */
  soakMs: number;
}

/** How the pairs after the canary are rolled. */
export interface Waves {
  /** Pairs per wave. */
  size: number;
  /** Pairs of a wave worked on at the same time. */
  maxParallel: number;
  /** Soak after each patch step of a wave pair. */
  soakMs: number;
}

/** A validated rollout plan. */
export interface Plan {
  /** File the plan came from. */
  source: string;
  /** Cluster name. */
  cluster: string;
  /** NATS servers. */
  natsServers: string[];
  /** Bundle directory or .tar (absolute). */
  bundle: string;
  /** Processes to patch on each node. */
  target: TargetSelector;
  /** Pairs to roll: every pair heard in heartbeats, or the listed ones. */
  pairs: "all" | string[];
  order: Order;
  canary: CanaryStage;
  waves: Waves;
  gates: Gates;
  failurePolicy: FailurePolicy;
  /** A rollout that completes no step for this long aborts itself. */
  progressDeadlineMs: number;
  agents: AgentEndpoints;
  /** Safety check level asked of the agents. */
  consistency: "strict" | "entry";
  /** How long to listen for heartbeats before deciding which pairs and roles exist. */
  discoveryMs: number;
}
