/**
 * Putting a rollout together: NATS, the cluster view, the lease, the store, the agents and the
 * engine; for start, resume, abort and pause. Transport setup lives here so the engine stays logic.
 */
import { hostname, userInfo } from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import { AgentPool } from "../agents/index.js";
import { ClusterView } from "../cluster/index.js";
import { connectNats } from "../cluster/nats.js";
import { type BundleArchive, readBundleArchive } from "./bundle_archive.js";
import { RolloutEngine } from "./engine.js";
import type { RolloutOutcome } from "./engine_types.js";
import { RolloutError } from "./errors.js";
import { type RolloutEvent, type RolloutEventBody, rolloutSubject } from "./events.js";
import { Lease } from "./lease.js";
import type { Plan } from "./plan_types.js";
import type { RolloutRecord } from "./state_types.js";
import { pairSteps, planStages, type Stage } from "./steps.js";
import { type LoadedRollout, newRolloutId, RolloutStore } from "./store.js";

/** Options common to every run. */
export interface RunOptions {
  /** Receives every event (the CLI prints them). */
  onEvent: (e: RolloutEvent) => void;
  /** Lease time to live. */
  leaseTtlMs?: number;
  /** Aborting it pauses the rollout (Ctrl-C). */
  signal?: AbortSignal;
  /** Soak poll interval. */
  pollMs?: number;
}

/** Who the controller is, for agents' audit logs and leases. */
export function actorName(): string {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers): keep "unknown"
  }
  return `hotpatch-controller ${user}@${hostname()} pid ${process.pid}`;
}

/** The pairs and roles seen, after listening to heartbeats. */
export interface Discovery {
  /** Nodes of each pair (exactly two), pair names sorted. */
  pairNodes: Record<string, [string, string]>;
  /** Roles as heartbeats report them, per node. */
  roles: Record<string, string>;
}

/** Listens to heartbeats and returns the pairs the plan covers; refuses pairs without exactly two nodes. */
export async function discoverPairs(view: ClusterView, plan: Plan, signal?: AbortSignal): Promise<Discovery> {
  const wanted = plan.pairs;
  const until = view.now() + plan.discoveryMs;
  // Listening stops early once every named pair is healthy; the rollout's pre-check judges them again.
  const complete = () => wanted !== "all" && wanted.every((p) => view.judgePair(p).kind === "healthy");
  while (view.now() < until && !complete() && !signal?.aborted) await new Promise((r) => setTimeout(r, 50));
  const seen = view.pairs();
  const names = wanted === "all" ? [...seen.keys()].sort() : wanted;
  if (names.length === 0) {
    throw new RolloutError(
      "ECLUSTER_NOT_READY",
      `no heartbeats from cluster ${plan.cluster} within ${plan.discoveryMs} ms (are its agents running and connected to ${plan.natsServers.join(", ")}?)`,
      { cluster: plan.cluster },
    );
  }
  const pairNodes: Record<string, [string, string]> = {};
  const roles: Record<string, string> = {};
  const problems: string[] = [];
  for (const p of names) {
    const nodes = seen.get(p) ?? [];
    if (nodes.length !== 2) {
      problems.push(
        `pair ${p} has ${nodes.length} node(s) heard (${nodes.map((n) => n.node).join(", ") || "none"}), needs 2`,
      );
      continue;
    }
    pairNodes[p] = [nodes[0]?.node as string, nodes[1]?.node as string];
    for (const n of nodes) roles[n.node] = n.role;
  }
  if (problems.length > 0) {
    throw new RolloutError("ECLUSTER_NOT_READY", problems.join("; "), { problems });
  }
  return { pairNodes, roles };
}

/** A connected session on one cluster. */
class Session {
  private constructor(
    readonly nc: NatsConnection,
    readonly view: ClusterView,
    readonly store: RolloutStore,
  ) {}

  static async open(servers: string[], cluster: string): Promise<Session> {
    const nc = await connectNats(servers, `hotpatch-controller ${cluster}`);
    try {
      const view = ClusterView.watch(nc, cluster);
      const store = await RolloutStore.open(nc, cluster);
      return new Session(nc, view, store);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    this.view.close();
    await this.nc.drain().catch(() => this.nc.close());
  }
}

async function drive(
  session: Session,
  loaded: LoadedRollout,
  bundle: BundleArchive,
  opts: RunOptions,
  lease: Lease,
  resumed: boolean,
  start: (engine: RolloutEngine) => void = () => undefined,
): Promise<RolloutOutcome> {
  const record = loaded.record;
  const subject = rolloutSubject(record.cluster, record.id);
  const emit = (body: RolloutEventBody) => {
    const e = { rollout: record.id, cluster: record.cluster, atMs: Date.now(), ...body } as RolloutEvent;
    session.nc.publish(subject, JSON.stringify(e));
    opts.onEvent(e);
  };
  const agents = new AgentPool(
    record.plan.agents,
    (node) => session.view.nodes().find((n) => n.node === node)?.grpcAddress ?? "",
  );
  const engine = new RolloutEngine(
    {
      store: session.store,
      view: session.view,
      agent: (n) => agents.agent(n),
      bundle,
      emit,
      actor: actorName(),
      ...(opts.pollMs ? { pollMs: opts.pollMs } : {}),
    },
    loaded,
  );
  lease.whenLost((err) => engine.leaseLost(err));
  const stopWatch = new AbortController();
  await session.store.setControl(record.id, { pause: false, abort: false, by: actorName(), atMs: Date.now() });
  await session.store.watchControl(
    record.id,
    (c) => {
      if (c.abort) engine.abort("requested");
      else if (c.pause) engine.pause();
    },
    stopWatch.signal,
  );
  const onSignal = () => engine.pause();
  opts.signal?.addEventListener("abort", onSignal, { once: true });
  emit({
    type: "rollout.started",
    bundleId: record.bundleId,
    stages: record.stages.map((s) => ({ name: s.name, pairs: s.pairs })),
    resumed,
  });
  start(engine);
  try {
    return await engine.run((soakMs) => pairSteps(record.plan.order, soakMs));
  } finally {
    opts.signal?.removeEventListener("abort", onSignal);
    stopWatch.abort();
    agents.close();
  }
}

function takeLease(session: Session, rolloutId: string, ttlMs: number): Promise<Lease> {
  return Lease.acquire(session.store.kv, { ttlMs, rolloutId, cluster: session.store.cluster });
}

/** Result of starting or resuming. */
export interface RunResult {
  id: string;
  outcome: RolloutOutcome;
}

/** Starts a new rollout of `plan`. */
export async function startRollout(
  plan: Plan,
  opts: RunOptions & { id?: string; onCreated?: (id: string) => void },
): Promise<RunResult> {
  const bundle = await readBundleArchive(plan.bundle);
  const session = await Session.open(plan.natsServers, plan.cluster);
  try {
    const id = opts.id ?? newRolloutId();
    const lease = await takeLease(session, id, opts.leaseTtlMs ?? 15_000);
    try {
      const found = await discoverPairs(session.view, plan, opts.signal);
      const stages: Stage[] = planStages(plan, Object.keys(found.pairNodes).sort());
      const record: RolloutRecord = {
        id,
        cluster: plan.cluster,
        plan,
        bundleId: bundle.id,
        stages,
        pairNodes: found.pairNodes,
        status: { kind: "running" },
        createdAtMs: Date.now(),
        lastProgressAtMs: Date.now(),
      };
      await session.store.saveRecord(record);
      opts.onCreated?.(id);
      const outcome = await drive(session, { record, pairs: new Map() }, bundle, opts, lease, false);
      return { id, outcome };
    } finally {
      await lease.release();
    }
  } finally {
    await session.close();
  }
}

/** Continues a rollout after a crash or a pause. */
export async function resumeRollout(
  servers: string[],
  cluster: string,
  id: string,
  opts: RunOptions,
): Promise<RunResult> {
  const session = await Session.open(servers, cluster);
  try {
    const lease = await takeLease(session, id, opts.leaseTtlMs ?? 15_000);
    try {
      const loaded = await session.store.load(id);
      const st = loaded.record.status.kind;
      if (st !== "running" && st !== "paused") {
        throw new RolloutError(
          "EROLLOUT_STATE",
          `rollout ${id} is ${st}; only a running (interrupted) or paused rollout can be resumed`,
          { id, status: st },
        );
      }
      const bundle = await readBundleArchive(loaded.record.plan.bundle);
      if (bundle.id !== loaded.record.bundleId) {
        throw new RolloutError(
          "EBUNDLE_READ",
          `bundle at ${loaded.record.plan.bundle} is now ${bundle.id}, the rollout started with ${loaded.record.bundleId}`,
          {},
        );
      }
      // Wait for one heartbeat round so gates see fresh data.
      await new Promise((r) => setTimeout(r, Math.min(loaded.record.plan.discoveryMs, 1000)));
      const outcome = await drive(session, loaded, bundle, opts, lease, true);
      return { id, outcome };
    } finally {
      await lease.release();
    }
  } finally {
    await session.close();
  }
}

/**
 * Asks a rollout to pause or abort. A running controller sees the request through KV and acts at
 * once. When no controller holds the lease (it crashed), an abort is carried out here: everything
 * the rollout patched is reverted.
 */
export async function requestStop(
  servers: string[],
  cluster: string,
  id: string,
  what: "pause" | "abort",
  opts: RunOptions,
): Promise<{ handledBy: "running-controller" } | { handledBy: "this-command"; outcome: RolloutOutcome }> {
  const session = await Session.open(servers, cluster);
  try {
    const loaded = await session.store.load(id);
    const st = loaded.record.status.kind;
    if (st === "done" || st === "aborted" || (st === "failed" && what === "pause")) {
      throw new RolloutError("EROLLOUT_STATE", `rollout ${id} is already ${st}`, { id, status: st });
    }
    const holder = await Lease.read(session.store.kv);
    if (holder && holder.rolloutId === id) {
      await session.store.setControl(id, {
        pause: what === "pause",
        abort: what === "abort",
        by: actorName(),
        atMs: Date.now(),
      });
      return { handledBy: "running-controller" };
    }
    const lease = await takeLease(session, id, opts.leaseTtlMs ?? 15_000);
    try {
      const again = await session.store.load(id);
      const bundle: BundleArchive = { id: again.record.bundleId, bytes: Buffer.alloc(0), sha256: "" };
      const outcome = await drive(session, again, bundle, opts, lease, true, (engine) =>
        what === "abort" ? engine.abort("requested") : engine.pause(),
      );
      return { handledBy: "this-command", outcome };
    } finally {
      await lease.release();
    }
  } finally {
    await session.close();
  }
}

/** Reads a rollout's state (no lease needed). */
export async function readRollout(servers: string[], cluster: string, id: string): Promise<LoadedRollout> {
  const session = await Session.open(servers, cluster);
  try {
    return await session.store.load(id);
  } finally {
    await session.close();
  }
}

/** Ids of the cluster's rollouts. */
export async function listRollouts(servers: string[], cluster: string): Promise<string[]> {
  const session = await Session.open(servers, cluster);
  try {
    return await session.store.list();
  } finally {
    await session.close();
  }
}
