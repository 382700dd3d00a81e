/**
 * Runs one drill on a healthy pair: a graceful switchover through the agents' Switchover calls, or
 * a failover by SIGKILL of the active node's agent or service; measures detection and takeover from
 * heartbeats, and ends with the pair healthy again (or says what must be restarted).
 */
import { deadlineSignal } from "../../common/index.js";
import { planLoad, startLoadgen } from "../../deploy/demo/index.js";
import { AgentPool } from "../agents/index.js";
import { ClusterView, checkName, connectNats, judgePair, type NodeView } from "../cluster/index.js";
import { DrillError } from "./errors.js";
import { killExactProcess } from "./local_process.js";
import { PairObserver } from "./observer.js";
import type { DetectedBy, DrillEvent, DrillLoad, DrillOptions, DrillResult, KillTarget, RestartNeed } from "./types.js";

const REQUESTED_BY = "hotpatch drill";

function checkOptions(o: DrillOptions): void {
  const bad = (field: string, message: string) => {
    throw new DrillError("EBAD_ARGUMENT", `${field}: ${message}`, { field });
  };
  for (const [what, v] of [
    ["cluster", o.cluster],
    ["pair", o.pair],
  ] as const) {
    try {
      checkName(what, v);
    } catch (err) {
      bad(what, (err as Error).message);
    }
  }
  if (o.kind !== "switchover" && o.kind !== "failover") bad("kind", "must be switchover or failover");
  if (o.kind === "switchover" && (o.kill !== undefined || o.restore !== undefined || o.service !== undefined))
    bad("kill", "kill, service and restore belong to a failover drill");
  if (o.kill !== undefined && o.kill !== "agent" && o.kill !== "service") bad("kill", "must be agent or service");
  if (o.service !== undefined && o.kill !== "service") bad("service", "only with kill service");
  if (!Number.isFinite(o.timeoutMs) || o.timeoutMs < 1000 || o.timeoutMs > 3_600_000)
    bad("timeoutMs", "must be 1000 to 3600000 ms");
  if (o.discoveryMs !== undefined && !(o.discoveryMs >= 0 && o.discoveryMs <= 60_000))
    bad("discoveryMs", "must be 0 to 60000 ms");
  if (o.natsServers.length === 0) bad("natsServers", "give at least one NATS server URL");
  if (o.load) {
    try {
      planLoad(loadOptions(o.load));
    } catch (err) {
      bad("load", (err as Error).message);
    }
  }
}

/** Listens until the pair's two nodes have each beaten twice and look healthy, or discoveryMs passes; then judges. */
async function discover(view: ClusterView, pair: string, discoveryMs: number, signal: AbortSignal) {
  const end = Date.now() + discoveryMs;
  const nodes = () => view.pairs().get(pair) ?? [];
  while (Date.now() < end) {
    const ns = nodes();
    if (ns.length === 2 && ns.every((n) => n.received >= 2) && judgePair(ns, view.now()).kind === "healthy") break;
    await new Promise((r) => setTimeout(r, 50));
    if (signal.aborted) throw new DrillError("ECANCELLED", "drill aborted while listening for heartbeats", { pair });
  }
  const ns = nodes();
  if (ns.length === 0) {
    throw new DrillError(
      "EPAIR_NOT_FOUND",
      `no heartbeats from pair ${pair} of cluster ${view.cluster} within ${discoveryMs} ms`,
      { cluster: view.cluster, pair },
    );
  }
  const j = judgePair(ns, view.now());
  if (j.kind === "unhealthy") {
    throw new DrillError(
      "EPAIR_UNHEALTHY",
      `pair ${pair} is not healthy, a drill must start from a healthy pair: ${j.problems.join("; ")}`,
      { cluster: view.cluster, pair, problems: j.problems },
    );
  }
  return j;
}

/** The demo load generator as a failover client of the pair. */
function loadOptions(l: DrillLoad) {
  return {
    endpoints: l.endpoints,
    strategy: "failover" as const,
    concurrency: 2,
    ratePerSec: l.ratePerSec ?? 200,
    durationMs: 3_600_000,
    timeoutMs: 500,
  };
}

/** Runs a drill; rejects with a DrillError (or the cluster's ENATS_CONNECT) when it cannot be run or fails. */
export async function runDrill(opts: DrillOptions): Promise<DrillResult> {
  checkOptions(opts);
  // `finished` ends the waits still pending when the drill stops early (a failed agent call).
  const finished = new AbortController();
  const deadline = deadlineSignal(opts.timeoutMs, opts.signal, finished.signal);
  const signal = deadline.signal;
  const emit = (e: DrillEvent) => opts.onEvent?.(e);
  const nc = await connectNats(opts.natsServers, `hotpatch drill ${opts.cluster}/${opts.pair}`);
  const view = ClusterView.watch(nc, opts.cluster);
  const obs = new PairObserver(view, opts.pair, (c) => emit({ kind: "role", ...c }));
  const pool = new AgentPool(
    { security: opts.agentSecurity, nodes: {}, callTimeoutMs: 10_000 },
    (node) => view.node(opts.pair, node)?.grpcAddress ?? "",
  );
  try {
    const start = await discover(view, opts.pair, opts.discoveryMs ?? 2000, signal);
    emit({ kind: "pair", active: start.active.node, standby: start.standby.node, intervalMs: start.intervalMs });
    const d = new Drill(opts, view, obs, pool, signal, emit, start.active, start.standby, start.intervalMs);
    const load = opts.load ? startLoadgen(loadOptions(opts.load)) : null;
    try {
      const r = opts.kind === "switchover" ? await d.switchover() : await d.failover(opts.kill ?? "agent");
      if (!load) return r;
      load.stop();
      const l = await load.done;
      return {
        ...r,
        load: {
          requests: l.requests,
          served: l.served,
          lost: l.failed + l.standby,
          failed: l.failed,
          standbyOnly: l.standby,
        },
      };
    } finally {
      load?.stop();
    }
  } finally {
    finished.abort(new Error("drill finished"));
    deadline.dispose();
    obs.close();
    view.close();
    pool.close();
    await nc.close().catch(() => undefined);
  }
}

/** One drill in progress. */
class Drill {
  readonly warnings: string[] = [];

  constructor(
    private readonly o: DrillOptions,
    private readonly view: ClusterView,
    private readonly obs: PairObserver,
    private readonly pool: AgentPool,
    private readonly signal: AbortSignal,
    private readonly emit: (e: DrillEvent) => void,
    private readonly active: NodeView,
    private readonly standby: NodeView,
    private readonly intervalMs: number,
  ) {}

  private warn(message: string): void {
    this.warnings.push(message);
    this.emit({ kind: "warning", message });
  }

  private async switchTo(node: string, role: "active" | "standby"): Promise<void> {
    try {
      await this.pool.agent(node).switchover(role, REQUESTED_BY, this.signal);
    } catch (cause) {
      throw new DrillError(
        "EAGENT",
        `switching ${node} to ${role} failed: ${(cause as Error).message}`,
        { node, role },
        { cause },
      );
    }
  }

  /** The first ACTIVE heartbeat of the standby after the start. */
  private takeover(): Promise<number> {
    const node = this.standby.node;
    return this.obs.wait(
      `${node} to report ACTIVE`,
      "ENO_TAKEOVER",
      () => {
        const b = this.obs.firstBeat(node, (n) => n.role === "active");
        return b ? this.obs.since(b.at) : undefined;
      },
      this.signal,
    );
  }

  /** Waits until the pair is healthy with `active` active and both nodes beat after `after` (monotonic ms); false on timeout. */
  private async healthy(after: number, budgetMs: number): Promise<boolean> {
    const bounded = deadlineSignal(budgetMs, this.signal);
    const fresh = (node: string) => this.obs.firstBeat(node, () => true, after) !== undefined;
    try {
      await this.obs.wait(
        "the pair to be healthy",
        "EPAIR_UNHEALTHY",
        () => {
          if (!fresh(this.active.node) || !fresh(this.standby.node)) return undefined;
          const j = this.view.judgePair(this.o.pair);
          return j.kind === "healthy" && j.active.node === this.standby.node ? true : undefined;
        },
        bounded.signal,
      );
      return true;
    } catch (err) {
      if (
        this.signal.aborted &&
        !(this.signal.reason instanceof DOMException && this.signal.reason.name === "TimeoutError")
      )
        throw err;
      return false;
    } finally {
      bounded.dispose();
    }
  }

  private result(
    detectionMs: number,
    detectedBy: DetectedBy,
    takeoverMs: number,
    healthyAfter: boolean,
    kill: KillTarget | null,
    mustRestart: RestartNeed | null,
  ): DrillResult {
    this.emit({ kind: "finished", healthy: healthyAfter });
    return {
      kind: this.o.kind,
      cluster: this.o.cluster,
      pair: this.o.pair,
      kill,
      oldActive: this.active.node,
      newActive: this.standby.node,
      intervalMs: this.intervalMs,
      detectionMs,
      detectedBy,
      takeoverMs,
      bothActiveSeen: this.obs.bothActiveSeen(),
      timeline: this.obs.timeline(),
      healthyAfter,
      mustRestart,
      warnings: this.warnings,
      load: null,
    };
  }

  /**
   * A handover of awaited steps, none of them a heartbeat or a ttl: the old active's Switchover
   * call returns once its demote hook has finished (a managed node then releases the lease, and
   * leaves it to its peer for one lease ttl, which expires by itself); the new active's call
   * returns once its promote hook has finished (a managed standby may already have taken the
   * released lease through its watch; the call then waits for that promotion). Never two actives;
   * the window with none is the hooks' own run time plus one call. Agents heartbeat a role change
   * at once, so detection and takeover are measured from those beats.
   */
  async switchover(): Promise<DrillResult> {
    const oldA = this.active.node;
    const newA = this.standby.node;
    this.obs.mark();
    this.emit({ kind: "started", drill: "switchover" });
    const detected = this.obs.wait(
      `${oldA} to step down`,
      "ENO_DETECTION",
      () => {
        const b = this.obs.firstBeat(oldA, (n) => n.role !== "active");
        return b ? this.obs.since(b.at) : undefined;
      },
      this.signal,
    );
    const took = this.takeover();
    detected.catch(() => undefined);
    took.catch(() => undefined);
    await this.switchTo(oldA, "standby");
    await this.switchTo(newA, "active").catch((err: DrillError) =>
      this.warn(`${err.message} (waiting for ${newA} to take over by itself)`),
    );
    const detectionMs = await detected;
    this.emit({ kind: "detected", node: oldA, ms: detectionMs, by: "role-change" });
    const takeoverMs = await took;
    this.emit({ kind: "takeover", node: newA, ms: takeoverMs });
    const healthyAfter = await this.healthy(this.obs.t0 + takeoverMs, Math.max(3000, 10 * this.intervalMs));
    return this.result(detectionMs, "role-change", takeoverMs, healthyAfter, null, null);
  }

  async failover(kill: KillTarget): Promise<DrillResult> {
    const oldA = this.active.node;
    const newA = this.standby.node;
    const need = await this.target(kill);
    const svc = need.service;
    // Armed before the kill, so nothing that happens after it is missed.
    const detected = this.obs.wait<[number, DetectedBy]>(
      `the controller to see ${oldA} fail`,
      "ENO_DETECTION",
      () => {
        const silent = this.obs.silence(oldA);
        const failed =
          kill === "service"
            ? this.obs.firstBeat(oldA, (n) => {
                const s = n.services.find((x) => x.name === svc);
                return !s?.healthy || s.pid !== need.pid;
              })
            : undefined;
        if (failed && (silent === undefined || failed.at <= silent))
          return [this.obs.since(failed.at), "service-failed"];
        if (silent !== undefined) return [this.obs.since(silent), "heartbeat-gap"];
        return undefined;
      },
      this.signal,
    );
    const took = this.takeover();
    detected.catch(() => undefined);
    took.catch(() => undefined);

    const startTime =
      kill === "agent"
        ? this.active.agentStartTime
        : (this.active.services.find((s) => s.name === svc)?.startTime ?? 0);
    this.obs.mark();
    await killExactProcess(
      kill === "agent" ? `the agent of ${oldA}` : `service ${svc} on ${oldA}`,
      need.pid,
      startTime,
    );
    this.emit({ kind: "started", drill: "failover", killed: need });

    const [detectionMs, by] = await detected;
    this.emit({ kind: "detected", node: oldA, ms: detectionMs, by });
    if (kill === "service") {
      // The agent lives on and its role source does not watch the service: the controller fails over,
      // stepping the failed node down (a managed lease is released) and promoting its peer.
      await this.switchTo(oldA, "standby").catch((err: DrillError) => this.warn(err.message));
      await this.switchTo(newA, "active").catch((err: DrillError) =>
        this.warn(`${err.message} (waiting for ${newA} to take over by itself)`),
      );
    }
    const takeoverMs = await took.catch((err: unknown) => {
      if (err instanceof DrillError && err.code === "ENO_TAKEOVER" && kill === "agent") {
        err.message += ` (after the kill of ${oldA}'s agent only a managed role or an external HA manager elects a new active; a static role never does)`;
      }
      throw err;
    });
    this.emit({ kind: "takeover", node: newA, ms: takeoverMs });

    if (!this.o.restore) {
      const healthyAfter = await this.healthy(performance.now(), 2 * this.intervalMs);
      return this.result(detectionMs, by, takeoverMs, healthyAfter, kill, need);
    }
    this.emit({ kind: "restoring", need });
    try {
      await this.o.restore(need);
    } catch (cause) {
      throw new DrillError(
        "ERESTORE",
        `restarting the killed ${kill} of ${oldA} failed: ${(cause as Error).message}`,
        { ...need },
        { cause },
      );
    }
    const healthyAfter = await this.healthy(performance.now(), Number.POSITIVE_INFINITY);
    return this.result(detectionMs, by, takeoverMs, healthyAfter, kill, healthyAfter ? null : need);
  }

  /** The process to kill, as the active's last heartbeat names it. */
  private async target(kill: KillTarget): Promise<RestartNeed> {
    const a = this.view.node(this.o.pair, this.active.node) ?? this.active;
    if (kill === "agent") {
      if (a.agentPid === 0) {
        throw new DrillError(
          "ENO_PID",
          `the heartbeat of ${a.node} does not name its agent's pid (agent older than this controller); upgrade the agent or use --kill service`,
          { node: a.node },
        );
      }
      return { target: "agent", node: a.node, pid: a.agentPid };
    }
    const names = a.services.map((s) => s.name);
    const name = this.o.service ?? (names.length === 1 ? names[0] : undefined);
    if (!name) {
      throw new DrillError(
        "EBAD_ARGUMENT",
        names.length === 0
          ? `${a.node} watches no service; kill its agent instead`
          : `${a.node} watches services ${names.join(", ")}: choose one with service`,
        { node: a.node, services: names },
      );
    }
    const s = a.services.find((x) => x.name === name);
    if (!s) {
      throw new DrillError("EBAD_ARGUMENT", `${a.node} watches no service ${name} (it watches ${names.join(", ")})`, {
        node: a.node,
        services: names,
      });
    }
    if (s.pid === 0) throw new DrillError("ENO_PID", `service ${name} on ${a.node} is not running`, { node: a.node });
    return { target: "service", node: a.node, pid: s.pid, service: name };
  }
}
