/**
 * The NATS contract, as the .proto files are the gRPC one: every subject, JetStream KV bucket and
 * key name, and the JSON values kept in KV. Agents, the controller, the simulator and the NATS
 * permissions are all written from this file; the message bodies on the subjects are the protobuf
 * `Heartbeat` and `Event` of hotpatch/v1.
 */

/** What a cluster, pair or node name may look like: it becomes one subject token and part of KV keys. */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** NAME_PATTERN in words, for messages. */
export const NAME_RULE = "1 to 64 letters, digits, '_' or '-'";

/** What a JetStream KV bucket name may look like. */
export const BUCKET_PATTERN = /^[A-Za-z0-9_-]+$/;

/** The three names that place a node. */
export interface NodeAddress {
  /** Cluster name. */
  cluster: string;
  /** Pair name, within the cluster. */
  pair: string;
  /** Node name, within the pair. */
  node: string;
}

// Subjects. Bodies: protobuf hotpatch.v1.Heartbeat on `hb`, hotpatch.v1.Event on `ev`.

/** Where a node publishes its heartbeats: `hotpatch.hb.<cluster>.<pair>.<node>`. */
export function heartbeatSubject(n: NodeAddress): string {
  return `hotpatch.hb.${n.cluster}.${n.pair}.${n.node}`;
}

/** Every heartbeat of one pair: `hotpatch.hb.<cluster>.<pair>.*`. */
export function pairHeartbeatSubjects(cluster: string, pair: string): string {
  return `hotpatch.hb.${cluster}.${pair}.*`;
}

/** Every heartbeat of one cluster: `hotpatch.hb.<cluster>.>`. */
export function clusterHeartbeatSubjects(cluster: string): string {
  return `hotpatch.hb.${cluster}.>`;
}

/** The node a heartbeat subject names, or null when the subject is not one. */
export function parseHeartbeatSubject(subject: string): NodeAddress | null {
  const [hotpatch, hb, cluster, pair, node, ...rest] = subject.split(".");
  if (hotpatch !== "hotpatch" || hb !== "hb" || rest.length > 0) return null;
  if (cluster === undefined || pair === undefined || node === undefined) return null;
  return { cluster, pair, node };
}

/** Where a node publishes its events: `hotpatch.ev.<cluster>.<pair>.<node>`. */
export function eventSubject(n: NodeAddress): string {
  return `hotpatch.ev.${n.cluster}.${n.pair}.${n.node}`;
}

// The pairs' role leases (agents, managed role mode).

/** KV bucket of the pairs' role leases unless the agent's config names another (`role.bucket`). */
export const DEFAULT_ROLE_BUCKET = "hotpatch_roles";

/** KV key of a pair's role lease: `lease.<cluster>.<pair>`; its value is a `PairLeaseValue`. */
export function pairLeaseKey(n: Pick<NodeAddress, "cluster" | "pair">): string {
  return `lease.${n.cluster}.${n.pair}`;
}

/** JSON value of a pair's role lease. */
export interface PairLeaseValue {
  /** Node holding the lease, "" when released. */
  holder: string;
  /** When the lease expires unless renewed, ms since the epoch (informational across hosts; also checked). */
  expiresAtMs: number;
  /** Node that released it (on a switchover), when holder is "". */
  releasedBy?: string;
}

// Rollout state (controllers).

/** KV bucket of a cluster's rollouts: `hotpatch-rollout-<cluster>` (the cluster name must be checked first). */
export function rolloutBucket(cluster: string): string {
  return `hotpatch-rollout-${cluster}`;
}

/** KV key of the cluster's rollout lease, in the rollout bucket; its value is a `RolloutLeaseValue`. */
export const ROLLOUT_LEASE_KEY = "lease";

/** KV key of a rollout's header record. */
export function rolloutKey(id: string): string {
  return `rollout.${id}`;
}

/** KV key of one pair's state within a rollout. */
export function rolloutPairKey(id: string, pair: string): string {
  return `rollout.${id}.pair.${pair}`;
}

/** KV key of a rollout's pause/abort requests from other commands. */
export function rolloutControlKey(id: string): string {
  return `rollout.${id}.control`;
}

/** JSON value of a cluster's rollout lease. */
export interface RolloutLeaseValue {
  /** Unique id of the holding controller. */
  holder: string;
  /** Host of the holder, for the operator. */
  host: string;
  /** Process id of the holder on its host, for the operator (and to free the lease of a dead local holder). */
  pid: number;
  /** Rollout the holder works on. */
  rolloutId: string;
  /** The lease is free after this time (ms since epoch) unless renewed. */
  expiresAtMs: number;
}
