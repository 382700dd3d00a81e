/** Puts the agent together: store, audit log, service, gRPC, NATS heartbeats, peer watch, role, metrics, follow. */
import { randomUUID } from "node:crypto";
import type { Server as HttpServer } from "node:http";
import type { Server as GrpcServer } from "@grpc/grpc-js";
import type { NatsConnection } from "@nats-io/transport-node";
import { Event, eventSubject, heartbeatSubject } from "../proto/index.js";
import { AuditLog } from "./audit/audit_log.js";
import type { AgentConfig } from "./config/types.js";
import { nativeEngine } from "./engine/native_engine.js";
import type { Engine } from "./engine/types.js";
import { EventHub } from "./events.js";
import { startExecWatch } from "./follow/exec_watch.js";
import { startGrpcServer, stopGrpcServer } from "./grpc/server.js";
import { heartbeatContent } from "./heartbeat/content.js";
import { readLoad } from "./heartbeat/load.js";
import { PeerWatch } from "./heartbeat/peer_watch.js";
import { type HeartbeatContent, HeartbeatPublisher } from "./heartbeat/publisher.js";
import { createLogger, type Logger } from "./log.js";
import { AgentMetrics, serveMetrics } from "./metrics/metrics.js";
import { connectNats } from "./nats/connection.js";
import { ProbeLoop } from "./probes/probe_loop.js";
import { ServiceWatch } from "./probes/service_health.js";
import { BuildIdCache, readStartTime } from "./procfs/processes.js";
import { makeRole } from "./roles/make_role.js";
import type { RoleController } from "./roles/types.js";
import { AgentService, roleToProto } from "./service/agent_service.js";
import { AllowList } from "./service/allow_list.js";
import { ServiceMetrics } from "./service_metrics/collector.js";
import { BundleStore } from "./store/bundle_store.js";

/** Options of startAgent beyond the configuration. */
export interface StartOptions {
  /** Version reported by Info. */
  version?: string;
  /** Patch engine (default: the native engine). */
  engine?: Engine;
  /** Logger (default: pino JSON on stderr at the configured level). */
  logger?: Logger;
}

/** A running agent. */
export interface RunningAgent {
  /** Port the gRPC server listens on. */
  grpcPort: number;
  /** Port of the metrics endpoint, or null. */
  metricsPort: number | null;
  /** The service logic (for in-process callers such as the demo). */
  service: AgentService;
  /** The role source. */
  role: RoleController;
  /** Stops everything the agent started; the role stays with the pair's lease until it expires. */
  stop(): Promise<void>;
}

/** Starts an agent; resolves once gRPC is listening and NATS is connected. */
export async function startAgent(config: AgentConfig, opts: StartOptions = {}): Promise<RunningAgent> {
  const log = opts.logger ?? createLogger(config);
  const id = { cluster: config.cluster, pair: config.pair, node: config.node };
  const metrics = new AgentMetrics();
  const store = new BundleStore(config.bundleDir, config.grpc.maxBundleBytes, config.trustedKeys);
  await store.open();
  const audit = new AuditLog(config.auditLog);
  await audit.open();
  const events = new EventHub(id);
  const ids = new BuildIdCache();
  const allow = await AllowList.resolve(config.allow);
  const cleanups: (() => Promise<void> | void)[] = [() => audit.close()];
  // The role goes first (a managed active hands over while NATS is still up); then the rest, last started first.
  let stopRole: (() => Promise<void>) | null = null;
  const stop = async () => {
    await stopRole?.().catch((err) => log.warn({ err }, "role stop failed"));
    for (const c of cleanups.reverse())
      await Promise.resolve(c()).catch((err) => log.warn({ err }, "stop step failed"));
  };
  try {
    // NATS carries heartbeats, events and the managed lease; patching is local and must not wait
    // for it. Only a managed role (which lives in NATS) waits for the first connection.
    const natsAbort = new AbortController();
    cleanups.push(() => natsAbort.abort());
    const natsName = `hotpatch-agent ${config.cluster}/${config.pair}/${config.node}`;
    const natsReady = connectNats(config.natsServers, natsName, natsAbort.signal);
    natsReady.catch(() => undefined);
    const roleLog = (msg: string, err?: unknown) => log.warn({ err }, msg);
    const role = makeRole(config, config.role.source === "managed" ? await natsReady : null, roleLog);
    const service = new AgentService({
      config,
      version: opts.version ?? "0.0.0",
      engine: opts.engine ?? nativeEngine(),
      store,
      audit,
      events,
      metrics,
      role,
      allow,
      ids,
      log: (level, msg, extra) => log[level](extra ?? {}, msg),
    });
    await service.recover();

    let nc: NatsConnection | null = null;
    cleanups.push(publishEvents(events, id, () => nc, log));
    metrics.active.set(role.role === "active" ? 1 : 0);
    role.onChange((r, reason) => {
      metrics.active.set(r === "active" ? 1 : 0);
      metrics.roleChanges.inc({ role: r });
      events.emit({ kind: "role.changed", role: roleToProto(r), message: reason });
    });
    await role.start();
    stopRole = () => role.stop();

    const { probes, serviceMetrics } = startProbes(config, ids, service, metrics, log, cleanups);
    // Announced in heartbeats once the gRPC server listens, so controllers can find this agent.
    let grpcAddress = "";

    const runId = randomUUID();
    const content = heartbeatContent({
      role,
      probes,
      patches: () => service.patchStates(),
      serviceMetrics,
      grpcAddress: () => grpcAddress,
      agentStartTime: (await readStartTime(process.pid)) ?? 0,
    });
    natsReady.then(
      (conn) => {
        nc = conn;
        startNatsParts(conn, { config, id, role, events, metrics, content, runId, log, cleanups });
      },
      () => undefined,
    );

    followExecs(service, log, cleanups);

    let metricsPort: number | null = null;
    if (config.metricsListen) {
      const { server, address } = await serveMetrics(metrics, config.metricsListen);
      metricsPort = address.port;
      cleanups.push(() => new Promise<void>((r) => (server as HttpServer).close(() => r())));
    }

    const { server, port } = await startGrpcServer(
      service,
      config.grpc.listen,
      config.grpc.security,
      config.grpc.maxBundleBytes,
    );
    cleanups.push(() => stopGrpcServer(server as GrpcServer));
    grpcAddress = `${config.grpc.listen.replace(/:\d+$/, "")}:${port}`;
    log.info({ grpcPort: port, metricsPort, role: role.role, runId }, "agent started");
    return { grpcPort: port, metricsPort, service, role, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** What the parts started on NATS work with. */
interface NatsParts {
  config: AgentConfig;
  id: { cluster: string; pair: string; node: string };
  role: RoleController;
  events: EventHub;
  metrics: AgentMetrics;
  content: HeartbeatContent;
  /** Random id of this agent run. */
  runId: string;
  log: Logger;
  cleanups: (() => Promise<void> | void)[];
}

/** Once NATS is connected: connection logging, heartbeats (and one at every role change), the peer watch. */
function startNatsParts(conn: NatsConnection, p: NatsParts): void {
  const { config, id, log, cleanups } = p;
  log.info({ server: conn.getServer() }, "NATS connected");
  cleanups.push(() => conn.close());
  void (async () => {
    for await (const st of conn.status()) {
      if (st.type === "disconnect" || st.type === "reconnect") log.warn({ nats: st.type }, `NATS ${st.type}`);
    }
  })();
  const hb = new HeartbeatPublisher(
    conn,
    heartbeatSubject(id),
    id,
    config.heartbeat.intervalMs,
    p.content,
    p.metrics,
    p.runId,
  );
  hb.start();
  cleanups.push(() => hb.stop());
  // A role change is announced at once, not up to an interval later.
  cleanups.push(p.role.onChange(() => hb.beatNow()));
  const lossBeats = config.heartbeat.peerLossBeats;
  const peer = new PeerWatch(conn, id, config.heartbeat.intervalMs, lossBeats, p.metrics, (s) => {
    if (s.kind === "lost")
      p.events.emit({ kind: "peer.lost", message: `no heartbeat from ${s.node} for ${lossBeats} intervals` });
    else if (s.kind === "alive") p.events.emit({ kind: "peer.seen", message: `heartbeats from ${s.node}` });
  });
  peer.start();
  cleanups.push(() => peer.stop());
}

/** Applies the follow rules to every process that execs, when the kernel lets this agent watch execs. */
function followExecs(service: AgentService, log: Logger, cleanups: (() => Promise<void> | void)[]): void {
  try {
    const watch = startExecWatch((pid, at) => {
      service.onExec(pid, at).catch((err) => log.warn({ err, pid }, "auto-apply failed"));
    });
    cleanups.push(() => watch.stop());
  } catch (err) {
    log.warn({ err }, "cannot watch new processes (needs root / CAP_NET_ADMIN); follow_new_processes will not work");
  }
}

/**
 * Service probes and host load on a loop of their own (heartbeats publish the latest round), and
 * service metrics on loops of their own, started once the first round found the processes. Every
 * 20th round re-reads the patch states from the targets.
 */
function startProbes(
  config: AgentConfig,
  ids: BuildIdCache,
  service: AgentService,
  metrics: AgentMetrics,
  log: Logger,
  cleanups: (() => Promise<void> | void)[],
): { probes: ProbeLoop; serviceMetrics: ServiceMetrics[] } {
  const watches = config.services.map((s) => new ServiceWatch(s, ids));
  // Service metrics read on loops of their own; started after the first probe round found the processes.
  const serviceMetrics = config.services.map(
    (s, i) =>
      new ServiceMetrics(s, () => watches[i]?.mainProcess() ?? null, {
        log: (level, msg, extra) => log[level](extra, msg),
        read: (svc, source, ok) =>
          metrics.serviceMetricReads.inc({ service: svc, source, result: ok ? "ok" : "failed" }),
      }),
  );
  cleanups.push(() => Promise.all(serviceMetrics.map((m) => m.stop())).then(() => undefined));
  const probes = new ProbeLoop(
    watches,
    readLoad,
    config.heartbeat.intervalMs,
    async (round) => {
      for (const m of serviceMetrics) m.start();
      if (round % 20 === 0) await service.refreshStates();
    },
    log,
  );
  probes.start();
  cleanups.push(() => probes.stop());
  return { probes, serviceMetrics };
}

/** Logs every agent event and publishes it on NATS while connected; returns the unsubscribe. */
function publishEvents(
  events: EventHub,
  id: { cluster: string; pair: string; node: string },
  conn: () => NatsConnection | null,
  log: Logger,
): () => void {
  const subject = eventSubject(id);
  return events.subscribe((e) => {
    log.info({ event: { ...e, timestampMs: undefined } }, e.kind);
    const nc = conn();
    if (nc && !nc.isClosed()) nc.publish(subject, Event.encode(e).finish());
  });
}
