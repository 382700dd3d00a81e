/** What the controller knows about a cluster's nodes, built from their heartbeats. */

/** Role of a node as its heartbeat reports it. */
export type NodeRole = "active" | "standby" | "unknown";

/** Health of one watched service on a node. */
export interface ServiceView {
  /** Service name from the agent's configuration. */
  name: string;
  /** True when every probe passed. */
  healthy: boolean;
  /** Process id of the service's main process (0 when not running). */
  pid: number;
  /** Start time of that process (clock ticks since boot); a change means a restart. */
  startTime: number;
  /** When the agent took these results (its clock, ms since epoch); 0 when it does not say. */
  checkedAtMs: number;
  /** Names of the probes that failed, with their messages. */
  failedProbes: { name: string; message: string }[];
}

/** One patch in one process, as a heartbeat reports it. */
export interface PatchView {
  /** Process id. */
  pid: number;
  /** Bundle id of the patch. */
  patchId: string;
  /** State: staged, loaded, active, inactive, unloaded or unknown. */
  state: string;
}

/** A gap in a node's heartbeat sequence, seen when the next heartbeat arrived. */
export interface SequenceGap {
  /** When the heartbeat after the gap was received (local clock, ms since epoch). */
  atMs: number;
  /** Heartbeats that never arrived. */
  missed: number;
}

/** The latest known state of one node. */
export interface NodeView {
  /** Cluster name. */
  cluster: string;
  /** Pair name. */
  pair: string;
  /** Node name. */
  node: string;
  /** Role in the last heartbeat. */
  role: NodeRole;
  /** Id of the agent run that sent the last heartbeat. */
  runId: string;
  /** Sequence number of the last heartbeat. */
  sequence: number;
  /** Publish interval the agent announced, ms. */
  intervalMs: number;
  /** When the last heartbeat was received, by the local clock (ms since epoch): ages use this, never the sender's clock. */
  receivedAtMs: number;
  /** Sender's timestamp of the last heartbeat (ms since epoch). */
  sentAtMs: number;
  /** Heartbeats received from this node since the view started. */
  received: number;
  /** Heartbeats known missed from sequence gaps since the view started. */
  missedTotal: number;
  /** The most recent sequence gaps (newest last, at most 16). */
  gaps: SequenceGap[];
  /** Watched services. */
  services: ServiceView[];
  /** Patches in watched processes. */
  patches: PatchView[];
  /** Service metrics for gates. */
  metrics: Record<string, number>;
  /**
   * Service name to when its metrics were read, ms since the epoch by the agent's clock (compare
   * with sentAtMs); a service missing here did not say.
   */
  metricsReadAtMs: Record<string, number>;
  /** gRPC address the agent announced ("" when it announces none). */
  grpcAddress: string;
  /** Process id of the agent on its host (0 when it does not say). */
  agentPid: number;
  /** Start time of the agent process, clock ticks since boot (0 when it does not say). */
  agentStartTime: number;
  /** How the agent finds new processes for its follow rules (null when it does not say). */
  newProcesses: NewProcessesView | null;
}

/** How an agent finds new processes: at once from the kernel's exec events, or by scanning its /proc. */
export type NewProcessesView =
  | { mode: "exec-events" }
  | { mode: "proc-scan"; intervalMs: number; reason: string }
  /** A mode this controller does not know (a newer agent). */
  | { mode: "unknown"; reported: string; reason: string };

/** Heartbeat age and beats missed by now, for one node. */
export interface Liveness {
  /** Milliseconds since the last heartbeat was received. */
  ageMs: number;
  /** Beats due since the last one and more than half an interval overdue (0 while it is on time). */
  missedNow: number;
}
