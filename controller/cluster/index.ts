/** Public face of the cluster view: nodes, roles, health and patches from NATS heartbeats. */
export { ClusterError, type ClusterErrorCode } from "./errors.js";
export {
  ALIVE_INTERVALS,
  judgePair,
  liveness,
  type NodeHealth,
  nodeHealth,
  type PairJudgement,
} from "./health.js";
export { checkName } from "./names.js";
export { connectNats } from "./nats.js";
export type { Liveness, NodeRole, NodeView, PatchView, SequenceGap, ServiceView } from "./types.js";
export { applyHeartbeat, ClusterView, type ViewListener } from "./view.js";
