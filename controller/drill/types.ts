/** What a drill is asked to do and what it reports. */
import type { AgentSecurity } from "../rollout/plan_types.js";

/** A graceful swap of roles, or the crash of the active node. */
export type DrillKind = "switchover" | "failover";

/** What a failover drill kills on the active node (with SIGKILL). */
export type KillTarget = "agent" | "service";

/** Role of a node as a drill's timeline shows it; `lost` is a node whose heartbeats stopped. */
export type TimelineRole = "active" | "standby" | "unknown" | "lost";

/** One role change seen in heartbeats. */
export interface RoleChange {
  /** Node name. */
  node: string;
  /** Its new role. */
  role: TimelineRole;
  /** Milliseconds after the drill's request (switchover) or kill (failover); negative before it. */
  atMs: number;
}

/** How the controller noticed that the old active was no longer serving as active. */
export type DetectedBy =
  /** Its heartbeat reported a role other than active (switchover). */
  | "role-change"
  /** Its heartbeats stopped for more than two intervals. */
  | "heartbeat-gap"
  /** Its heartbeat reported the killed service unhealthy, or a different process for it. */
  | "service-failed";

/** A process the drill killed and that must run again for the pair to be whole. */
export interface RestartNeed {
  /** What was killed. */
  target: KillTarget;
  /** Node it belongs to. */
  node: string;
  /** Process id it had. */
  pid: number;
  /** Service name (when target is `service`). */
  service?: string;
}

/** Options of runDrill. */
export interface DrillOptions {
  /** NATS server URLs. */
  natsServers: string[];
  /** Cluster name. */
  cluster: string;
  /** Pair to drill. */
  pair: string;
  /** Switchover or failover. */
  kind: DrillKind;
  /** Failover only: what to kill on the active node (default `agent`). */
  kill?: KillTarget;
  /** Failover with kill `service`: which watched service (default: the node's only service). */
  service?: string;
  /** How to reach the agents' gRPC (mTLS files, or explicitly insecure). */
  agentSecurity: AgentSecurity;
  /** Deadline of the whole drill, ms (discovery, the drill, restore and the wait for a healthy pair). */
  timeoutMs: number;
  /** How long to listen for heartbeats before judging the pair, ms (default 2000). */
  discoveryMs?: number;
  /** Stops the drill (it then rejects with ECANCELLED). */
  signal?: AbortSignal;
  /** Called with every step, as it happens. */
  onEvent?: (e: DrillEvent) => void;
  /** Failover only: restarts what was killed; the drill then waits until the pair is healthy again. */
  restore?: (need: RestartNeed) => Promise<void>;
  /** Runs the demo load generator (a failover client of the pair) through the drill and counts what it lost. */
  load?: DrillLoad;
}

/** The load a drill runs through the pair's services (demo services on loopback). */
export interface DrillLoad {
  /** The pair's service endpoints, `host:port` on loopback. */
  endpoints: string[];
  /** Requests per second (default 200). */
  ratePerSec?: number;
}

/** What the load generator saw during the drill. */
export interface LoadFigures {
  /** Requests finished. */
  requests: number;
  /** Requests an active node answered. */
  served: number;
  /** Requests no node served: failed plus standby-only. */
  lost: number;
  /** Requests that got no valid answer from any node. */
  failed: number;
  /** Requests every node answered with STANDBY. */
  standbyOnly: number;
}

/** Something that happened during a drill. */
export type DrillEvent =
  /** The pair was found healthy; the drill starts. */
  | { kind: "pair"; active: string; standby: string; intervalMs: number }
  /** The switchover was requested, or the process killed. */
  | { kind: "started"; drill: DrillKind; killed?: RestartNeed }
  /** A role change seen in heartbeats. */
  | ({ kind: "role" } & RoleChange)
  /** The controller saw the old active fail or step down. */
  | { kind: "detected"; node: string; ms: number; by: DetectedBy }
  /** The new active reported ACTIVE. */
  | { kind: "takeover"; node: string; ms: number }
  /** Something went wrong that the drill survived (e.g. an agent call after a kill). */
  | { kind: "warning"; message: string }
  /** The restore callback is running. */
  | { kind: "restoring"; need: RestartNeed }
  /** The drill's last check of the pair. */
  | { kind: "finished"; healthy: boolean };

/** What a drill measured. */
export interface DrillResult {
  /** Switchover or failover. */
  kind: DrillKind;
  /** Cluster name. */
  cluster: string;
  /** Pair name. */
  pair: string;
  /** Failover only: what was killed. */
  kill: KillTarget | null;
  /** Node that was active before the drill. */
  oldActive: string;
  /** Node that is active after it. */
  newActive: string;
  /** Heartbeat interval the agents announced, ms (the baseline of the figures). */
  intervalMs: number;
  /** Request or kill → the controller sees the old active fail or step down, ms. */
  detectionMs: number;
  /** How that was seen. */
  detectedBy: DetectedBy;
  /** Request or kill → first heartbeat of the new active reporting ACTIVE, ms. */
  takeoverMs: number;
  /** Whether heartbeats ever showed both nodes active at once (by the senders' timestamps). */
  bothActiveSeen: boolean;
  /** Role changes seen in heartbeats, in order. */
  timeline: RoleChange[];
  /** Both nodes heartbeating, one active and one standby, every service healthy, when the drill ended. */
  healthyAfter: boolean;
  /** What the operator must restart (failover without a restore callback), or null. */
  mustRestart: RestartNeed | null;
  /** Problems the drill survived. */
  warnings: string[];
  /** What the load generator saw from just before the request or kill to the end (null without `load`). */
  load: LoadFigures | null;
}
