/** Public face of the agents' gRPC client: one channel per node, promise-shaped calls with deadlines, errors naming the node. */
export { AgentCallError, type AgentCallErrorCode } from "./errors.js";
export { type AgentApi, AgentPool } from "./pool.js";
export type { AgentEndpoints, AgentSecurity, TargetSelector, UploadBundle } from "./types.js";
