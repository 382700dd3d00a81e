/** Public face of the cluster view: nodes, roles, health and patches from NATS heartbeats. */
export { ClusterError, type ClusterErrorCode } from "./errors.js";
export { checkName } from "./names.js";
export { connectNats } from "./nats.js";
export type { Liveness, NodeRole, NodeView, PatchView, SequenceGap, ServiceView } from "./types.js";
export { applyHeartbeat, ClusterView, liveness, type ViewListener } from "./view.js";
