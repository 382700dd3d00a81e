/** Publishing protobuf heartbeats on a real NATS server, as an agent does, to test what reads them. */
import type { NatsConnection } from "@nats-io/transport-node";
import { Heartbeat, PatchState, Role } from "../../proto/index.js";

/** What a test heartbeat says; unset fields get an agent-like default. */
export interface BeatSpec {
  cluster?: string;
  pair: string;
  node: string;
  role?: "active" | "standby" | "unknown";
  sequence: number;
  intervalMs?: number;
  runId?: string;
  services?: {
    name: string;
    healthy: boolean;
    pid: number;
    startTime: number;
    failedProbe?: string;
    /** When the probes ran (default: now). */
    checkedAtMs?: number;
  }[];
  patches?: { pid: number; patchId: string; state: "active" | "loaded" | "inactive" }[];
  metrics?: Record<string, number>;
  /** Service name to when its metrics were read (agent clock, ms since the epoch). */
  metricsReadAtMs?: Record<string, number>;
}

const ROLES = { active: Role.ROLE_ACTIVE, standby: Role.ROLE_STANDBY, unknown: Role.ROLE_UNKNOWN };
const STATES = {
  active: PatchState.PATCH_STATE_ACTIVE,
  loaded: PatchState.PATCH_STATE_LOADED,
  inactive: PatchState.PATCH_STATE_INACTIVE,
};

/** Publishes one heartbeat on `hotpatch.hb.<cluster>.<pair>.<node>` and flushes. */
export async function publishBeat(nc: NatsConnection, b: BeatSpec): Promise<void> {
  const cluster = b.cluster ?? "c1";
  const hb = Heartbeat.fromPartial({
    cluster,
    pair: b.pair,
    node: b.node,
    role: ROLES[b.role ?? "standby"],
    sequence: b.sequence,
    timestampMs: Date.now(),
    intervalMs: b.intervalMs ?? 50,
    runId: b.runId ?? "run-1",
    services: (b.services ?? [{ name: "svc", healthy: true, pid: 100, startTime: 5000 }]).map((s) => ({
      name: s.name,
      healthy: s.healthy,
      pid: s.pid,
      startTime: s.startTime,
      checkedAtMs: s.checkedAtMs ?? Date.now(),
      probes: s.failedProbe ? [{ name: s.failedProbe, ok: false, latencyMs: 1, message: "connection refused" }] : [],
    })),
    patches: (b.patches ?? []).map((p) => ({ pid: p.pid, patchId: p.patchId, state: STATES[p.state] })),
    metrics: b.metrics ?? {},
    metricsReadAtMs: b.metricsReadAtMs ?? {},
  });
  nc.publish(`hotpatch.hb.${cluster}.${b.pair}.${b.node}`, Heartbeat.encode(hb).finish());
  await nc.flush();
}

/**
 * Publishes heartbeats every `intervalMs` (sequence increasing) until stopped; `spec()` is read each
 * time. The beats announce `announcedMs` (default `intervalMs`): announcing more than the real rate
 * keeps a test about content from depending on how busy the machine is.
 */
export function beatEvery(
  nc: NatsConnection,
  intervalMs: number,
  spec: () => Omit<BeatSpec, "sequence" | "intervalMs">,
  announcedMs = intervalMs,
): { stop(): void; sequence(): number } {
  let seq = 0;
  const send = () => {
    seq++;
    void publishBeat(nc, { ...spec(), sequence: seq, intervalMs: announcedMs }).catch(() => undefined);
  };
  send();
  const timer = setInterval(send, intervalMs);
  return { stop: () => clearInterval(timer), sequence: () => seq };
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` every 20 ms until it returns true or `timeoutMs` passes. */
export async function until(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
