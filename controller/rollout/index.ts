/** Public face of rollouts: plans, the engine, state in KV, and the runner the CLI uses. */
export { type BundleArchive, readBundleArchive } from "./bundle_archive.js";
export { formatDuration, parseDuration } from "./duration.js";
export { RolloutEngine } from "./engine.js";
export type { EngineDeps, RolloutOutcome } from "./engine_types.js";
export { PlanError, type PlanIssue, RolloutError, type RolloutErrorCode } from "./errors.js";
export { type EventBase, type RolloutEvent, type RolloutEventBody, rolloutSubject } from "./events.js";
export { baselineOf, evaluateGates, firstEnforcedFailure, type GateInput, gateCount } from "./gates.js";
export { Lease, type LeaseOptions } from "./lease.js";
export { loadPlan, parsePlan, validatePlan } from "./plan.js";
export type * from "./plan_types.js";
export {
  actorName,
  type Discovery,
  discoverPairs,
  listRollouts,
  type RunOptions,
  type RunResult,
  readRollout,
  requestStop,
  resumeRollout,
  startRollout,
} from "./runner.js";
export type * from "./state_types.js";
export { describeStep, type PairStep, pairSteps, planStages, type Stage } from "./steps.js";
export { bucketName, type LoadedRollout, newRolloutId, RolloutStore } from "./store.js";
