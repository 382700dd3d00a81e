/**
 * What a heartbeat says besides its header: the role, each service's health from the latest probe
 * round, the patch states read from the targets, the host's load, the service metrics, and this
 * agent's gRPC address and process (so a drill on this host can find it, and never a reused pid).
 */
import type { ProcessPatch } from "../../proto/index.js";
import type { ProbeLoop } from "../probes/probe_loop.js";
import type { RoleController } from "../roles/types.js";
import { roleToProto } from "../service/agent_service.js";
import { heartbeatMetrics, type ServiceMetrics } from "../service_metrics/collector.js";
import type { HeartbeatContent } from "./publisher.js";

/** Where each part of a heartbeat comes from. */
export interface HeartbeatSources {
  role: Pick<RoleController, "role">;
  probes: Pick<ProbeLoop, "health" | "load">;
  /** Patch states as last read from the targets. */
  patches: () => ProcessPatch[];
  serviceMetrics: readonly ServiceMetrics[];
  /** The gRPC address to announce ("" until the server listens). */
  grpcAddress: () => string;
  /** This process's start time, clock ticks since boot (0 when unknown). */
  agentStartTime: number;
}

/** The content of each heartbeat, read from `s` when the beat is sent. */
export function heartbeatContent(s: HeartbeatSources): HeartbeatContent {
  return () => ({
    role: roleToProto(s.role.role),
    services: s.probes.health.map((h) => ({
      name: h.name,
      healthy: h.healthy,
      pid: h.pid,
      startTime: h.startTime,
      probes: h.probes,
      checkedAtMs: h.checkedAtMs,
    })),
    grpcAddress: s.grpcAddress(),
    agentPid: process.pid,
    agentStartTime: s.agentStartTime,
    patches: s.patches(),
    load: s.probes.load,
    ...heartbeatMetrics(s.serviceMetrics),
  });
}
