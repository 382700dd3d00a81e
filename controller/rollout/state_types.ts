/** Rollout state as kept in JetStream KV (JSON). Times are ms since the Unix epoch. */
import type { GateMode, Plan } from "./plan_types.js";
import type { PairStep, Stage } from "./steps.js";

/** A gate's verdict on one node at one moment. */
export interface GateResult {
  /** Gate name: heartbeatGap, probes, noRestart, patchActive, metric:<name>, precheck, roles, switchover. */
  gate: string;
  /** Node the gate looked at. */
  node: string;
  /** Whether it held. */
  ok: boolean;
  /** enforce or observe. */
  mode: GateMode;
  /** The value seen, readable (e.g. `age 1200ms = 4 intervals`, `error_rate=0.2`). */
  value: string;
}

/** Why a pair (and the rollout) stopped. */
export interface Failure {
  /** Pair. */
  pair: string;
  /** Node, or "" when the failure is not about one node. */
  node: string;
  /** Gate or step that failed. */
  gate: string;
  /** The value seen or the error message. */
  value: string;
  /** Stable code: EGATE_FAILED, EAGENT, ECLUSTER_NOT_READY. */
  code: string;
}

/** Roles of a pair's two nodes. */
export interface PairRoles {
  /** Node that serves. */
  active: string;
  /** Hot standby. */
  standby: string;
}

/** Pid and start time of a watched service, to tell a restart. */
export interface ServiceBaseline {
  /** Service name. */
  name: string;
  /** Pid at the start of the soak. */
  pid: number;
  /** Start time at the start of the soak. */
  startTime: number;
}

/** Where a pair is. */
export type PairPhase =
  | { kind: "pending" }
  | { kind: "running" }
  | { kind: "done" }
  | { kind: "failed"; failure: Failure }
  | { kind: "rolled-back"; failure: Failure | null }
  | { kind: "paused"; failure: Failure | null };

/** One completed step, kept to prove no step ran twice. */
export interface StepRecord {
  /** Index into the pair's steps. */
  index: number;
  /** Step kind. */
  kind: PairStep["kind"];
  /** Node it touched, or "" for both/none. */
  node: string;
  /** When it finished. */
  atMs: number;
}

/** The state of one pair in a rollout (KV key `rollout.<id>.pair.<pair>`). */
export interface PairState {
  /** Pair name. */
  pair: string;
  /** Its two nodes. */
  nodes: [string, string];
  /** Steps of this pair. */
  steps: PairStep[];
  /** Index of the first step not completed. */
  next: number;
  /** Roles as read by the last role check. */
  roles: PairRoles | null;
  /** Nodes this rollout asked to patch (recorded before the call, so a crash never forgets one). */
  patched: string[];
  /** Node chosen by each patch step (key: step index), recorded before the call: a step re-run after a crash touches the same node. */
  targets: Record<string, string>;
  /** The soak in progress: when it began and the services' baseline. */
  soak: { index: number; startedAtMs: number; baseline: Record<string, ServiceBaseline[]> } | null;
  phase: PairPhase;
  /** Completed steps in order. */
  history: StepRecord[];
}

/** Where the rollout as a whole is. */
export type RolloutStatus =
  | { kind: "running" }
  | { kind: "paused"; failure: Failure | null }
  | { kind: "done" }
  | { kind: "failed"; failure: Failure }
  | { kind: "aborted"; reason: "requested" | "deadline" };

/** The rollout header (KV key `rollout.<id>`). */
export interface RolloutRecord {
  /** Rollout id. */
  id: string;
  /** Cluster. */
  cluster: string;
  /** The plan it runs. */
  plan: Plan;
  /** Bundle id from the manifest. */
  bundleId: string;
  /** Stages in order. */
  stages: Stage[];
  /** Nodes of each pair. */
  pairNodes: Record<string, [string, string]>;
  status: RolloutStatus;
  /** When it was created. */
  createdAtMs: number;
  /** When a step last completed. */
  lastProgressAtMs: number;
}

/** Requests to a running rollout (KV key `rollout.<id>.control`), written by other commands. */
export interface ControlRecord {
  /** Stop at the next step boundary. */
  pause: boolean;
  /** Roll back everything at once. */
  abort: boolean;
  /** Who asked. */
  by: string;
  /** When. */
  atMs: number;
}
