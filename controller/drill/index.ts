/** Public face of drills: a switchover or failover on one healthy pair, measured from heartbeats. */
export { DrillError, type DrillErrorCode } from "./errors.js";
export { runDrill } from "./run_drill.js";
export type * from "./types.js";
