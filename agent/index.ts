/** Public face of the per-host agent. */
export { type RunningAgent, type StartOptions, startAgent } from "./agent.js";
export { loadConfig, parseConfig } from "./config/load.js";
export type {
  AgentConfig,
  CommandConfig,
  GrpcSecurity,
  HooksConfig,
  ProbeConfig,
  RoleName,
  RoleSource,
  ScrapeConfig,
  SelectorConfig,
  ServiceConfig,
  ServiceMetricsConfig,
} from "./config/types.js";
export type { Consistency, Engine, OpOptions, OpResult, PatchRecord, PatchSpec } from "./engine/types.js";
export { AgentError, type AgentErrorCode, type AgentErrorContext, ConfigError, type ConfigIssue } from "./errors.js";
export type { NodeRole } from "./roles/types.js";
export { flatName, parseExposition, type Sample } from "./service_metrics/exposition.js";
