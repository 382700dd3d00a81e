/**
 * Follows one pair's heartbeats during a drill: when each beat was received (monotonic clock),
 * what role it reported and when it was sent, and when a node fell silent for more than
 * ALIVE_INTERVALS intervals (a timer re-armed by every beat, so silence is seen when it happens, not
 * at the next poll). Waits resolve on the event that satisfies them.
 */
import { afterPendingIo } from "../../common/index.js";
import { ALIVE_INTERVALS, type ClusterView, type NodeView } from "../cluster/index.js";
import { DrillError, type DrillErrorCode } from "./errors.js";
import type { RoleChange, TimelineRole } from "./types.js";

/** One heartbeat as the drill saw it. */
export interface SeenBeat {
  /** The node's view after this beat. */
  view: NodeView;
  /** Received, ms on the monotonic clock. */
  at: number;
}

export class PairObserver {
  readonly #beats = new Map<string, SeenBeat[]>();
  readonly #silentAt = new Map<string, number[]>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #lastRole = new Map<string, TimelineRole>();
  readonly #changes: { node: string; role: TimelineRole; at: number }[] = [];
  readonly #wakers = new Set<() => void>();
  readonly #stop: () => void;
  /** Start of the drill's measurements (monotonic ms). */
  t0 = Number.POSITIVE_INFINITY;

  constructor(
    view: ClusterView,
    readonly pair: string,
    private readonly onChange: (c: RoleChange) => void = () => undefined,
  ) {
    this.#stop = view.onHeartbeat((n) => {
      if (n.pair === pair) this.#beat(n);
    });
  }

  #record(node: string, role: TimelineRole, at: number): void {
    if (this.#lastRole.get(node) === role) return;
    const first = !this.#lastRole.has(node);
    this.#lastRole.set(node, role);
    this.#changes.push({ node, role, at });
    if (!first) this.onChange({ node, role, atMs: Math.round(at - this.t0) });
  }

  #beat(n: NodeView): void {
    const at = performance.now();
    const list = this.#beats.get(n.node) ?? [];
    list.push({ view: n, at });
    this.#beats.set(n.node, list);
    this.#record(n.node, n.role, at);
    clearTimeout(this.#timers.get(n.node));
    const gap = ALIVE_INTERVALS * Math.max(1, n.intervalMs) + 1;
    const timer = setTimeout(() => {
      const silentAt = performance.now();
      // A beat that came while this process was held up is read first: then the node was not silent.
      afterPendingIo(() => {
        if (this.#timers.get(n.node) !== timer) return;
        this.#silentAt.set(n.node, [...(this.#silentAt.get(n.node) ?? []), silentAt]);
        this.#record(n.node, "lost", silentAt);
        this.#wake();
      });
    }, gap);
    this.#timers.set(n.node, timer);
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#wakers]) w();
  }

  /** Starts the measurements now. */
  mark(): void {
    this.t0 = performance.now();
  }

  /** Milliseconds since mark(). */
  since(at: number): number {
    return Math.round(at - this.t0);
  }

  /** The first beat of `node` received after mark() that satisfies `pred`, or undefined. */
  firstBeat(node: string, pred: (n: NodeView) => boolean, after = this.t0): SeenBeat | undefined {
    return this.#beats.get(node)?.find((b) => b.at >= after && pred(b.view));
  }

  /** When `node` was first seen silent after mark(), or undefined. */
  silence(node: string): number | undefined {
    return this.#silentAt.get(node)?.find((at) => at >= this.t0);
  }

  /**
   * Resolves with `check()`'s first value other than undefined, checked now and after every beat
   * or silence; rejects with `code` when `signal` aborts (ECANCELLED when the caller aborted).
   */
  wait<T>(what: string, code: DrillErrorCode, check: () => T | undefined, signal: AbortSignal): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = () => {
        this.#wakers.delete(waker);
        signal.removeEventListener("abort", onAbort);
      };
      const waker = () => {
        const v = check();
        if (v === undefined) return;
        done();
        resolve(v);
      };
      const onAbort = () => {
        done();
        const timedOut = signal.reason instanceof DOMException && signal.reason.name === "TimeoutError";
        reject(
          timedOut
            ? new DrillError(code, `timed out waiting for ${what}`, { pair: this.pair })
            : new DrillError(
                "ECANCELLED",
                `drill aborted while waiting for ${what}`,
                { pair: this.pair },
                {
                  cause: signal.reason,
                },
              ),
        );
      };
      if (signal.aborted) return onAbort();
      this.#wakers.add(waker);
      signal.addEventListener("abort", onAbort, { once: true });
      waker();
    });
  }

  /** Role changes after the first beat of each node, relative to mark(). */
  timeline(): RoleChange[] {
    const seen = new Set<string>();
    const out: RoleChange[] = [];
    for (const c of this.#changes) {
      // A node's first role is where it started, not a change; it is kept when it came after mark() (a restarted agent).
      const first = !seen.has(c.node);
      seen.add(c.node);
      if (first && c.at < this.t0) continue;
      out.push({ node: c.node, role: c.role, atMs: this.since(c.at) });
    }
    return out;
  }

  /**
   * Whether heartbeats show both nodes active at one moment, by the senders' timestamps: a node
   * counts as active from one ACTIVE beat to the next consecutive ACTIVE beat of the same agent run,
   * and an ACTIVE beat of the other node sent within that span means both were active.
   */
  bothActiveSeen(): boolean {
    const spans = new Map<string, [number, number][]>();
    const actives = new Map<string, number[]>();
    for (const [node, beats] of this.#beats) {
      const list: [number, number][] = [];
      let prev: NodeView | null = null;
      for (const { view } of beats) {
        if (view.role === "active") {
          actives.set(node, [...(actives.get(node) ?? []), view.sentAtMs]);
          if (prev?.role === "active" && prev.runId === view.runId) list.push([prev.sentAtMs, view.sentAtMs]);
        }
        prev = view;
      }
      spans.set(node, list);
    }
    for (const [node, list] of spans) {
      for (const [other, times] of actives) {
        if (other === node) continue;
        if (times.some((t) => list.some(([a, b]) => a <= t && t <= b))) return true;
      }
    }
    return false;
  }

  /** Stops following heartbeats. */
  close(): void {
    this.#stop();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#wakers.clear();
  }
}
