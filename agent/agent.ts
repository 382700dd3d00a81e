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
import { type ExecWatch, startExecWatch } from "./follow/exec_watch.js";
import { startGrpcServer, stopGrpcServer } from "./grpc/server.js";
import { readLoad } from "./heartbeat/load.js";
import { PeerWatch } from "./heartbeat/peer_watch.js";
import { HeartbeatPublisher } from "./heartbeat/publisher.js";
import { createLogger, type Logger } from "./log.js";
import { AgentMetrics, serveMetrics } from "./metrics/metrics.js";
import { connectNats } from "./nats/connection.js";
import { type ServiceHealthNow, ServiceWatch } from "./probes/service_health.js";
import { BuildIdCache, readStartTime } from "./procfs/processes.js";
import { makeRole } from "./roles/make_role.js";
import type { RoleController } from "./roles/types.js";
import { AgentService, roleToProto } from "./service/agent_service.js";
import { AllowList } from "./service/allow_list.js";
import { heartbeatMetrics, ServiceMetrics } from "./service_metrics/collector.js";
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

    const evSubject = eventSubject(id);
    let nc: NatsConnection | null = null;
    cleanups.push(
      events.subscribe((e) => {
        log.info({ event: { ...e, timestampMs: undefined } }, e.kind);
        if (nc && !nc.isClosed()) nc.publish(evSubject, Event.encode(e).finish());
      }),
    );
    metrics.active.set(role.role === "active" ? 1 : 0);
    role.onChange((r, reason) => {
      metrics.active.set(r === "active" ? 1 : 0);
      metrics.roleChanges.inc({ role: r });
      events.emit({ kind: "role.changed", role: roleToProto(r), message: reason });
    });
    await role.start();
    stopRole = () => role.stop();

    // Probes and load run on their own loop; heartbeats publish the latest results without waiting.
    const watches = config.services.map((s) => new ServiceWatch(s, ids));
    // Service metrics read on loops of their own; started after the first probe round found the processes.
    const serviceMetrics = config.services.map(
      (s, i) =>
        new ServiceMetrics(s, () => watches[i]?.mainProcess() ?? null, {
          log: (level, msg, extra) => log[level](extra, msg),
          read: (service, source, ok) =>
            metrics.serviceMetricReads.inc({ service, source, result: ok ? "ok" : "failed" }),
        }),
    );
    cleanups.push(() => Promise.all(serviceMetrics.map((m) => m.stop())).then(() => undefined));
    let health: ServiceHealthNow[] = [];
    // Announced in heartbeats once the gRPC server listens, so controllers can find this agent.
    let grpcAddress = "";
    let load = { load1: 0, memoryUsed: 0 };
    let probing = true;
    const probeLoop = async () => {
      let n = 0;
      while (probing) {
        const started = performance.now();
        try {
          [health, load] = await Promise.all([Promise.all(watches.map((w) => w.check())), readLoad()]);
          for (const m of serviceMetrics) m.start();
          if (++n % 20 === 0) await service.refreshStates();
        } catch (err) {
          log.warn({ err }, "probe round failed");
        }
        await new Promise((r) =>
          setTimeout(r, Math.max(0, config.heartbeat.intervalMs - (performance.now() - started))),
        );
      }
    };
    const probeDone = probeLoop();
    cleanups.push(async () => {
      probing = false;
      await probeDone;
    });

    const runId = randomUUID();
    // Heartbeats name this process, so a drill on this host can find the agent (and never a reused pid).
    const agentStartTime = (await readStartTime(process.pid)) ?? 0;
    const startNatsParts = (conn: NatsConnection) => {
      nc = conn;
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
        () => ({
          role: roleToProto(role.role),
          services: health.map((h) => ({
            name: h.name,
            healthy: h.healthy,
            pid: h.pid,
            startTime: h.startTime,
            probes: h.probes,
            checkedAtMs: h.checkedAtMs,
          })),
          grpcAddress,
          agentPid: process.pid,
          agentStartTime,
          patches: service.patchStates(),
          load,
          ...heartbeatMetrics(serviceMetrics),
        }),
        metrics,
        runId,
      );
      hb.start();
      cleanups.push(() => hb.stop());
      // A role change is announced at once, not up to an interval later.
      cleanups.push(role.onChange(() => hb.beatNow()));

      const peer = new PeerWatch(
        conn,
        id,
        config.heartbeat.intervalMs,
        config.heartbeat.peerLossBeats,
        metrics,
        (s) => {
          if (s.kind === "lost")
            events.emit({
              kind: "peer.lost",
              message: `no heartbeat from ${s.node} for ${config.heartbeat.peerLossBeats} intervals`,
            });
          else if (s.kind === "alive") events.emit({ kind: "peer.seen", message: `heartbeats from ${s.node}` });
        },
      );
      peer.start();
      cleanups.push(() => peer.stop());
    };
    natsReady.then(startNatsParts, () => undefined);

    let execWatch: ExecWatch | null = null;
    try {
      execWatch = startExecWatch((pid, at) => {
        service.onExec(pid, at).catch((err) => log.warn({ err, pid }, "auto-apply failed"));
      });
      cleanups.push(() => execWatch?.stop());
    } catch (err) {
      log.warn({ err }, "cannot watch new processes (needs root / CAP_NET_ADMIN); follow_new_processes will not work");
    }

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
