/** The agent's Prometheus metrics (prom-client, one registry per agent) and the HTTP endpoint that serves them. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export class AgentMetrics {
  readonly registry = new Registry();
  /** Patch operations per process, by operation (apply, revert) and outcome (done, already, skipped, failed). */
  readonly patchOps = new Counter({
    name: "hotpatch_patch_operations_total",
    help: "Patch operations per process by operation and outcome",
    labelNames: ["op", "outcome"],
    registers: [this.registry],
  });
  /** Target pause per operation. */
  readonly pauseUs = new Histogram({
    name: "hotpatch_pause_microseconds",
    help: "Time a target was stopped by one patch operation, microseconds",
    labelNames: ["op"],
    buckets: [50, 100, 200, 500, 1000, 2000, 5000, 10_000, 50_000],
    registers: [this.registry],
  });
  /** Failures by stable error code. */
  readonly failures = new Counter({
    name: "hotpatch_failures_total",
    help: "Failed operations by error code",
    labelNames: ["op", "code"],
    registers: [this.registry],
  });
  /** Heartbeats published and skipped (NATS unreachable). */
  readonly heartbeats = new Counter({
    name: "hotpatch_heartbeats_total",
    help: "Heartbeats by result (published, skipped)",
    labelNames: ["result"],
    registers: [this.registry],
  });
  /** How late the last heartbeat left compared with its schedule. */
  readonly heartbeatLagMs = new Gauge({
    name: "hotpatch_heartbeat_lag_milliseconds",
    help: "Delay of the last heartbeat behind its schedule",
    registers: [this.registry],
  });
  /** Age of the newest heartbeat from the pair peer. */
  readonly peerAgeMs = new Gauge({
    name: "hotpatch_peer_heartbeat_age_milliseconds",
    help: "Age of the last heartbeat seen from the pair peer (-1: never seen)",
    registers: [this.registry],
  });
  /** Times the peer was declared lost. */
  readonly peerLost = new Counter({
    name: "hotpatch_peer_lost_total",
    help: "Times the pair peer was declared lost",
    registers: [this.registry],
  });
  /** 1 when this node is active, 0 otherwise. */
  readonly active = new Gauge({
    name: "hotpatch_role_active",
    help: "1 when this node is active in its pair",
    registers: [this.registry],
  });
  /** Role changes. */
  readonly roleChanges = new Counter({
    name: "hotpatch_role_changes_total",
    help: "Role changes by new role",
    labelNames: ["role"],
    registers: [this.registry],
  });
  /** Delay from a process's exec to it being patched by a follow rule. */
  readonly followDelayMs = new Histogram({
    name: "hotpatch_follow_exec_to_patched_milliseconds",
    help: "Delay from exec of a new matching process to its patch being active",
    buckets: [5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [this.registry],
  });

  /** Reads of service metrics sources (heartbeat metrics), by service, source and result. */
  readonly serviceMetricReads = new Counter({
    name: "hotpatch_service_metric_reads_total",
    help: "Reads of service metrics sources for heartbeats, by service, source (proc, http, exec) and result (ok, failed)",
    labelNames: ["service", "source", "result"],
    registers: [this.registry],
  });

  /** Audit log writes and syncs the disk refused, by code (ENOSPACE, EIO). */
  readonly auditFailures = new Counter({
    name: "hotpatch_audit_write_failures_total",
    help: "Audit log writes or syncs that failed, by code (ENOSPACE, EIO); the records stay queued",
    labelNames: ["code"],
    registers: [this.registry],
  });
  /** Where the audit gauges read from at each scrape (the agent's audit log). */
  private auditHealth: () => { pending: number; dropped: number } = () => ({ pending: 0, dropped: 0 });
  /** Audit records waiting for the disk. */
  readonly auditPending: Gauge = new Gauge({
    name: "hotpatch_audit_pending_records",
    help: "Audit records the disk refused, queued in memory until it takes them",
    registers: [this.registry],
    collect: (): void => this.auditPending.set(this.auditHealth().pending),
  });
  /** Audit records dropped because too many were waiting. */
  readonly auditDropped: Gauge = new Gauge({
    name: "hotpatch_audit_dropped_records",
    help: "Audit records dropped since the agent started because too many were waiting (each is in the agent's log)",
    registers: [this.registry],
    collect: (): void => this.auditDropped.set(this.auditHealth().dropped),
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "hotpatch_agent_" });
  }

  /** Reads the audit gauges from `health` from now on. */
  watchAudit(health: () => { pending: number; dropped: number }): void {
    this.auditHealth = health;
  }
}

/** Serves `/metrics` on host:port; resolves with the bound address. */
export async function serveMetrics(
  metrics: AgentMetrics,
  listen: string,
): Promise<{ server: Server; address: AddressInfo }> {
  const i = listen.lastIndexOf(":");
  const host = listen.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(listen.slice(i + 1));
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end("only /metrics here\n");
      return;
    }
    metrics.registry
      .metrics()
      .then((body) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(body))
      .catch((err: Error) => res.writeHead(500).end(err.message));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return { server, address: server.address() as AddressInfo };
}
