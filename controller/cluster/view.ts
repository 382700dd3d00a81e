/**
 * A live view of a cluster built from its agents' heartbeats on NATS `hotpatch.hb.<cluster>.>`.
 * Ages are measured with the local clock from when each heartbeat was received, so a sender's clock
 * skew never makes a silent node look alive; a node that stops sending only grows older.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { clusterHeartbeatSubjects, Heartbeat, PatchState, parseHeartbeatSubject, Role } from "../../proto/index.js";
import { judgePair, liveness, type NodeHealth, nodeHealth, type PairJudgement } from "./health.js";
import { checkName } from "./names.js";
import type { Liveness, NodeRole, NodeView, PatchView, ServiceView } from "./types.js";

const MAX_GAPS = 16;

function roleName(role: Role): NodeRole {
  if (role === Role.ROLE_ACTIVE) return "active";
  if (role === Role.ROLE_STANDBY) return "standby";
  return "unknown";
}

function patchStateName(state: PatchState): string {
  switch (state) {
    case PatchState.PATCH_STATE_STAGED:
      return "staged";
    case PatchState.PATCH_STATE_LOADED:
      return "loaded";
    case PatchState.PATCH_STATE_ACTIVE:
      return "active";
    case PatchState.PATCH_STATE_INACTIVE:
      return "inactive";
    case PatchState.PATCH_STATE_UNLOADED:
      return "unloaded";
    default:
      return "unknown";
  }
}

/** Builds the next view of a node from its previous view and a new heartbeat. */
export function applyHeartbeat(prev: NodeView | undefined, hb: Heartbeat, receivedAtMs: number): NodeView {
  const services: ServiceView[] = hb.services.map((s) => ({
    name: s.name,
    healthy: s.healthy,
    pid: s.pid,
    startTime: s.startTime,
    checkedAtMs: s.checkedAtMs,
    failedProbes: s.probes.filter((p) => !p.ok).map((p) => ({ name: p.name, message: p.message })),
  }));
  const patches: PatchView[] = hb.patches.map((p) => ({
    pid: p.pid,
    patchId: p.patchId,
    state: patchStateName(p.state),
  }));
  let gaps = prev?.gaps ?? [];
  let missedTotal = prev?.missedTotal ?? 0;
  if (prev && prev.runId === hb.runId && hb.sequence > prev.sequence + 1) {
    const missed = hb.sequence - prev.sequence - 1;
    missedTotal += missed;
    gaps = [...gaps, { atMs: receivedAtMs, missed }].slice(-MAX_GAPS);
  }
  return {
    cluster: hb.cluster,
    pair: hb.pair,
    node: hb.node,
    role: roleName(hb.role),
    runId: hb.runId,
    sequence: hb.sequence,
    intervalMs: hb.intervalMs,
    receivedAtMs,
    sentAtMs: hb.timestampMs,
    received: (prev?.received ?? 0) + 1,
    missedTotal,
    gaps,
    services,
    patches,
    metrics: { ...hb.metrics },
    metricsReadAtMs: { ...hb.metricsReadAtMs },
    grpcAddress: hb.grpcAddress,
    agentPid: hb.agentPid,
    agentStartTime: hb.agentStartTime,
  };
}

/** Called after every accepted heartbeat. */
export type ViewListener = (node: NodeView) => void;

/** The latest state of every node of one cluster, kept current from heartbeats. */
export class ClusterView {
  readonly #nodes = new Map<string, NodeView>();
  readonly #listeners = new Set<ViewListener>();
  readonly #now: () => number;
  #sub: Subscription | null = null;
  /** Heartbeats that could not be decoded or named another cluster. */
  rejected = 0;

  private constructor(
    readonly cluster: string,
    now: () => number,
  ) {
    this.#now = now;
  }

  /** Starts following the heartbeats of `cluster` on `nc`. */
  static watch(nc: NatsConnection, cluster: string, now: () => number = Date.now): ClusterView {
    const view = new ClusterView(cluster, now);
    view.#sub = nc.subscribe(clusterHeartbeatSubjects(checkName("cluster", cluster)), {
      callback: (err, msg) => {
        if (err) return;
        view.#accept(msg.subject, msg.data);
      },
    });
    return view;
  }

  #accept(subject: string, data: Uint8Array): void {
    let hb: Heartbeat;
    try {
      hb = Heartbeat.decode(data);
    } catch {
      this.rejected++;
      return;
    }
    // A body that disagrees with its subject is not trusted.
    const from = parseHeartbeatSubject(subject);
    if (hb.cluster !== this.cluster || from?.cluster !== hb.cluster || from.pair !== hb.pair || from.node !== hb.node) {
      this.rejected++;
      return;
    }
    const key = `${hb.pair}/${hb.node}`;
    const next = applyHeartbeat(this.#nodes.get(key), hb, this.#now());
    this.#nodes.set(key, next);
    for (const l of this.#listeners) l(next);
  }

  /** Every node seen so far, sorted by pair then node. */
  nodes(): NodeView[] {
    return [...this.#nodes.values()].sort((a, b) => a.pair.localeCompare(b.pair) || a.node.localeCompare(b.node));
  }

  /** Nodes grouped by pair, pairs sorted by name. */
  pairs(): Map<string, NodeView[]> {
    const out = new Map<string, NodeView[]>();
    for (const n of this.nodes()) {
      const list = out.get(n.pair) ?? [];
      list.push(n);
      out.set(n.pair, list);
    }
    return out;
  }

  /** The latest view of one node, if it was ever heard. */
  node(pair: string, node: string): NodeView | undefined {
    return this.#nodes.get(`${pair}/${node}`);
  }

  /** Liveness of a node now; undefined when it was never heard. */
  /** One node judged now (see `nodeHealth`), if it was ever heard. */
  health(pair: string, node: string, allowedIntervals?: number): NodeHealth | undefined {
    const n = this.#nodes.get(`${pair}/${node}`);
    return n ? nodeHealth(n, this.#now(), allowedIntervals) : undefined;
  }

  /** One pair judged now (see `judgePair`). */
  judgePair(pair: string, allowedIntervals?: number): PairJudgement {
    return judgePair(this.pairs().get(pair) ?? [], this.#now(), allowedIntervals);
  }

  liveness(pair: string, node: string): Liveness | undefined {
    const n = this.node(pair, node);
    return n ? liveness(n, this.#now()) : undefined;
  }

  /** The view's clock (ms since epoch). */
  now(): number {
    return this.#now();
  }

  /** Calls `listener` after every accepted heartbeat; returns a function that stops it. */
  onHeartbeat(listener: ViewListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves after the next heartbeat of `pair/node` received after now, or rejects when `signal`
   * aborts or `timeoutMs` passes (then with a message naming the node).
   */
  nextHeartbeat(pair: string, node: string, timeoutMs: number, signal?: AbortSignal): Promise<NodeView> {
    return new Promise((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        stop();
        signal?.removeEventListener("abort", onAbort);
        fn();
      };
      const stop = this.onHeartbeat((n) => {
        if (n.pair === pair && n.node === node) done(() => resolve(n));
      });
      const timer = setTimeout(
        () => done(() => reject(new Error(`no heartbeat from ${pair}/${node} within ${timeoutMs} ms`))),
        timeoutMs,
      );
      const onAbort = () => done(() => reject(signal?.reason ?? new Error("aborted")));
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Stops following heartbeats. */
  close(): void {
    this.#sub?.unsubscribe();
    this.#sub = null;
    this.#listeners.clear();
  }
}
