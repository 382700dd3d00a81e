/**
 * The pair elects its active node through a lease in a JetStream KV bucket (key `lease.<cluster>.<pair>`).
 *
 * nats-server 2.9 has no per-key TTL, so the value holds the holder and an expiry time, and every
 * write is a compare-and-swap on the key's revision. Safety (never two actives) does not rest on
 * clocks agreeing: a holder demotes itself `demoteAfterMs` after sending its last renewal that
 * succeeded, while a challenger takes over only after it has itself watched the same revision stay
 * unchanged for a whole `leaseTtlMs` (and the stored expiry has passed). Since demoteAfterMs <
 * leaseTtlMs, the holder is standby before any challenger can write.
 */

import { jetstream } from "@nats-io/jetstream";
import { type KV, Kvm, type KvWatchEntry, KvWatchInclude } from "@nats-io/kv";
import type { NatsConnection, QueuedIterator } from "@nats-io/transport-node";
import { afterPendingIo } from "../../common/index.js";
import type { PairLeaseValue } from "../../proto/index.js";
import type { HooksConfig, RoleName } from "../config/types.js";
import { AgentError } from "../errors.js";
import { DeadManFence } from "./dead_man_fence.js";
import { runCommand } from "./hooks.js";
import { RoleState } from "./role_state.js";
import { Serial } from "./serial.js";
import type { NodeRole, RoleController, RoleListener } from "./types.js";

/** Settings of the lease. */
export interface LeaseSettings {
  /** This node. */
  node: string;
  /** KV key of the pair's lease. */
  key: string;
  /** KV bucket. */
  bucket: string;
  leaseTtlMs: number;
  renewMs: number;
  demoteAfterMs: number;
  hooks: HooksConfig;
}

/**
 * What this node knows of the lease: a discriminated union, so a holder always has a revision, a
 * renewal time and its promotion (the promote hook's run for this holding, which resolves once the
 * role is active).
 */
type LeaseView =
  | { kind: "holding"; revision: number; lastRenewSentAt: number; promotion: Promotion }
  | { kind: "watching"; revision: number; since: number }
  | { kind: "none" };

/** The promote hook's run for one holding of the lease. */
interface Promotion {
  /** Resolves once the hook finished and the role is active; rejects when the hook failed or the lease was lost first. */
  done: Promise<void>;
  /** Cancels the hook (the lease was lost or given up while it ran). */
  cancel: AbortController;
}

const monotonicMs = () => performance.now();

export class ManagedRole implements RoleController {
  private readonly state = new RoleState("standby");
  private view: LeaseView = { kind: "none" };
  private kv: KV | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private demoteTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private releasedAt = Number.NEGATIVE_INFINITY;
  private busy: Promise<void> = Promise.resolve();
  /** A lease step is running; `again` asks for another one right after it. */
  private stepping = false;
  private again = false;
  private readonly hooks = new Serial();
  private watcher: QueuedIterator<KvWatchEntry> | null = null;
  /** Runs the demote hook if this agent dies while holding the lease (none without a demote hook). */
  private readonly deadMan: DeadManFence | null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly s: LeaseSettings,
    private readonly env: Record<string, string>,
    private readonly log: (msg: string, err?: unknown) => void,
  ) {
    this.deadMan = s.hooks.demote
      ? new DeadManFence(`hotpatch-fence:${s.key}:${s.node}`, s.hooks.demote, env, log)
      : null;
  }

  get role(): NodeRole {
    return this.state.role;
  }

  /** The lease as stored now (for status and tests), or null. */
  async readLease(): Promise<PairLeaseValue | null> {
    const kv = await this.bucket();
    const e = await kv.get(this.s.key);
    if (e?.operation !== "PUT" || e.length === 0) return null;
    return e.json<PairLeaseValue>();
  }

  async start(): Promise<void> {
    // A switch left by a killed earlier run may still be demoting the service: let it finish first.
    this.step(() =>
      (this.deadMan?.leftoversEnded() ?? Promise.resolve()).then(() => this.tick()).then(() => this.fence()),
    );
  }

  /** Runs `work` (a lease step) now, or right after the step running; then a step every renewMs. */
  private step(work: () => Promise<void> = () => this.tick()): void {
    if (this.stopped) return;
    if (this.stepping) {
      this.again = true;
      return;
    }
    if (this.tickTimer) clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.stepping = true;
    this.busy = work().finally(() => {
      this.stepping = false;
      if (this.stopped) return;
      if (this.again) {
        this.again = false;
        this.step();
      } else {
        this.tickTimer = setTimeout(() => this.step(), this.s.renewMs);
      }
    });
  }

  /**
   * A node that starts without the lease runs the demote hook once: its service may still act as
   * active, left so by a previous agent run that was killed (nothing else would ever demote it,
   * and the peer takes over when that run's lease expires). Never throws.
   */
  private async fence(): Promise<void> {
    if (this.view.kind === "holding" || !this.s.hooks.demote) return;
    const hook = this.s.hooks.demote;
    await this.hooks
      .run(() => runCommand(hook, "demote hook", this.env))
      .catch((err) => this.log("demote hook at start failed", err));
  }

  /**
   * Stops following the lease. An active node steps down first (demote hook) and releases the
   * lease, so its peer takes over at once; otherwise the peer would take over a lease ttl later
   * while this node's service, with no agent left to demote it, still acted as active.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    this.watcher?.stop();
    await this.busy.catch(() => undefined);
    if (this.view.kind === "holding" && this.kv) await this.stepDown(this.kv, "agent stopping");
    this.clearDemoteTimer();
    await this.hooks.idle();
    await this.deadMan?.disarm();
  }

  /** Demotes (role, then hook to its end) and then releases the lease by compare-and-swap; a failed release only delays the peer. */
  private async stepDown(kv: KV, reason: string): Promise<void> {
    const held = this.view;
    this.releasedAt = monotonicMs();
    await this.demote(reason);
    if (held.kind === "holding") {
      await kv
        .update(this.s.key, this.encode({ holder: "", expiresAtMs: 0, releasedBy: this.s.node }), held.revision)
        .catch((err) => this.log("lease release failed; the peer takes over when it expires", err));
    }
  }

  onChange(l: RoleListener): () => void {
    return this.state.onChange(l);
  }

  private async bucket(): Promise<KV> {
    if (!this.kv) {
      // Requests give up well within the demote deadline, so a dead link cannot pile them up.
      const js = jetstream(this.nc, { timeout: Math.max(50, Math.floor(this.s.demoteAfterMs / 2)) });
      const kv = await new Kvm(js).create(this.s.bucket, { history: 1 });
      if (!this.kv) {
        this.kv = kv;
        void this.watchReleases(kv);
      }
    }
    return this.kv;
  }

  /**
   * Takes a lease step as soon as the lease is released (or deleted), instead of at the next
   * renewMs tick: a graceful handover then waits for no timer. A watch that fails is started again
   * a renewMs later; until then a release is seen at the next tick.
   */
  private async watchReleases(kv: KV): Promise<void> {
    while (!this.stopped) {
      try {
        const it = await kv.watch({ key: this.s.key, include: KvWatchInclude.UpdatesOnly });
        this.watcher = it;
        if (this.stopped) it.stop();
        for await (const e of it) {
          const released = e.operation !== "PUT" || e.length === 0 || e.json<PairLeaseValue>().holder === "";
          if (released && this.view.kind !== "holding") this.step();
        }
      } catch (err) {
        if (!this.stopped) this.log("lease watch failed; a released lease is seen at the next renewal", err);
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, this.s.renewMs).unref());
    }
  }

  private encode(v: PairLeaseValue): string {
    return JSON.stringify(v);
  }

  private clearDemoteTimer(): void {
    if (this.demoteTimer) clearTimeout(this.demoteTimer);
    this.demoteTimer = null;
  }

  /** (Re)arms the self-demotion deadline: demoteAfterMs after the last renewal that succeeded was sent. */
  private armDemote(sentAt: number): void {
    this.clearDemoteTimer();
    const wait = Math.max(0, sentAt + this.s.demoteAfterMs - monotonicMs());
    const timer = setTimeout(() => {
      // A renewal that succeeded while this agent was held up (GC, a busy CPU) is read first, and
      // re-arms the deadline: only a renewal that really failed for demoteAfterMs demotes.
      afterPendingIo(() => {
        if (this.demoteTimer === timer) void this.demote(`could not renew the lease for ${this.s.demoteAfterMs} ms`);
      });
    }, wait);
    this.demoteTimer = timer;
  }

  /**
   * Steps down at once: cancels a promote hook still running, sets the role, then runs the demote
   * hook after any hook before it (its failure is reported, never undoes the demotion). Resolves
   * when the demote hook has finished.
   */
  private demote(reason: string): Promise<void> {
    this.clearDemoteTimer();
    const held = this.view;
    const mayServe = held.kind === "holding" || this.state.role === "active";
    if (held.kind === "holding") held.promotion.cancel.abort();
    this.view = { kind: "none" };
    this.state.set("standby", reason);
    const hook = this.s.hooks.demote;
    if (!mayServe || !hook) return this.hooks.idle();
    const disarmed = this.deadMan?.disarm(); // this agent runs the hook itself, once
    return this.hooks
      .run(async () => {
        await disarmed;
        await runCommand(hook, "demote hook", this.env);
      })
      .then(
        () => undefined,
        (err) => this.log("demote hook failed", err),
      );
  }

  /**
   * Holds the lease from now on; the role turns active once the promote hook has finished. The dead
   * man's switch is armed first: an agent killed during or after the promote hook leaves a service
   * that may act as active.
   */
  private becomeActive(revision: number, sentAt: number, reason: string): void {
    this.deadMan?.arm();
    const cancel = new AbortController();
    const promotion: Promotion = { cancel, done: Promise.resolve() };
    const stillOurs = () => this.view.kind === "holding" && this.view.promotion === promotion;
    const hook = this.s.hooks.promote;
    promotion.done = this.hooks
      .run(async () => {
        if (cancel.signal.aborted || !stillOurs()) return;
        if (hook) await runCommand(hook, "promote hook", this.env, cancel.signal);
      })
      .then(
        () => {
          if (!stillOurs()) {
            throw new AgentError("EPRECONDITION", "the lease was lost or given up before the promote hook finished");
          }
          this.state.set("active", reason);
        },
        async (err: unknown) => {
          if (!stillOurs()) {
            throw new AgentError(
              "EPRECONDITION",
              "the lease was lost or given up while the promote hook ran",
              {},
              { cause: err },
            );
          }
          this.log("promote hook failed; giving the lease up so that the peer can take over", err);
          if (this.kv) await this.stepDown(this.kv, "promote hook failed");
          throw err;
        },
      );
    promotion.done.catch(() => undefined);
    this.view = { kind: "holding", revision, lastRenewSentAt: sentAt, promotion };
    this.armDemote(sentAt);
  }

  private mine(sentAt: number): string {
    return this.encode({ holder: this.s.node, expiresAtMs: Date.now() + this.s.leaseTtlMs - (monotonicMs() - sentAt) });
  }

  /** One step of the lease protocol. Never throws. */
  private async tick(): Promise<void> {
    try {
      const kv = await this.bucket();
      if (this.view.kind === "holding") {
        const sentAt = monotonicMs();
        const held = this.view;
        try {
          const revision = await kv.update(this.s.key, this.mine(sentAt), held.revision);
          if (this.view !== held) return; // demoted while the request was out
          this.view = { ...held, revision, lastRenewSentAt: sentAt };
          this.armDemote(sentAt);
        } catch (err) {
          if (isCasFailure(err)) void this.demote("the lease was taken by another node");
          else throw err;
        }
        return;
      }
      await this.challenge(kv);
    } catch (err) {
      this.log("lease step failed", err);
    }
  }

  /** Standby side: take the lease when it is free, ours from a previous run, or expired as we observed it. */
  private async challenge(kv: KV, force = false): Promise<void> {
    const now = monotonicMs();
    const entry = await kv.get(this.s.key);
    // A step that ran meanwhile (a watch event, a switchover call) may have taken it already.
    if (this.view.kind === "holding" || this.stopped) return;
    const sentAt = monotonicMs();
    if (entry?.operation !== "PUT" || entry.length === 0) {
      try {
        const rev = entry
          ? await kv.update(this.s.key, this.mine(sentAt), entry.revision)
          : await kv.create(this.s.key, this.mine(sentAt));
        this.becomeActive(rev, sentAt, "lease was free");
      } catch (err) {
        if (!isCasFailure(err)) throw err;
      }
      return;
    }
    const v = entry.json<PairLeaseValue>();
    // After a voluntary release this node leaves the lease to its peer for one ttl (unless forced).
    const cooling = !force && now - this.releasedAt < this.s.leaseTtlMs;
    const free = (v.holder === this.s.node || v.holder === "") && !cooling;
    if (this.view.kind !== "watching" || this.view.revision !== entry.revision) {
      this.view = { kind: "watching", revision: entry.revision, since: now };
    }
    const expired = now - this.view.since >= this.s.leaseTtlMs && Date.now() >= v.expiresAtMs;
    if (!free && !expired) return;
    try {
      const rev = await kv.update(this.s.key, this.mine(sentAt), entry.revision);
      this.becomeActive(
        rev,
        sentAt,
        free ? (v.holder === this.s.node ? "lease still ours" : "lease released") : `lease of ${v.holder} expired`,
      );
    } catch (err) {
      if (!isCasFailure(err)) throw err;
    }
  }

  /**
   * To standby: demote (hook to its end), then release the lease. To active: take the lease (it must
   * be free or ours) and resolve once the promote hook has finished, so the caller knows the service
   * serves; rejects with the hook's EHOOK when it failed (the lease is then given up again).
   */
  async switchover(target: RoleName, signal?: AbortSignal): Promise<NodeRole> {
    signal?.throwIfAborted();
    await this.busy.catch(() => undefined);
    const kv = await this.bucket().catch((err) => {
      throw new AgentError(
        "ENATS",
        `cannot reach the lease bucket ${this.s.bucket}: ${(err as Error).message}`,
        {},
        { cause: err },
      );
    });
    if (target === "standby") {
      if (this.view.kind === "holding") await this.stepDown(kv, "switchover");
      else await this.hooks.idle(); // a demotion already under way ends first
      return this.state.role;
    }
    if (this.view.kind !== "holding") {
      const v = await this.readLease().catch((err) => {
        throw new AgentError(
          "ENATS",
          `cannot read the lease ${this.s.key}: ${(err as Error).message}`,
          {},
          { cause: err },
        );
      });
      if (v && v.holder !== "" && v.holder !== this.s.node) {
        throw new AgentError(
          "EPRECONDITION",
          `node ${v.holder} holds the pair's lease; switch it to standby first (it releases the lease and this node takes over)`,
        );
      }
      await this.challenge(kv, true).catch((err) => {
        throw new AgentError(
          "ENATS",
          `cannot take the lease ${this.s.key}: ${(err as Error).message}`,
          {},
          { cause: err },
        );
      });
    }
    const held = this.view;
    if (held.kind !== "holding")
      throw new AgentError("EPRECONDITION", "could not take the lease (another node took it first); try again");
    await untilDone(held.promotion.done, signal);
    return this.state.role;
  }
}

/** Waits for `p`, or rejects when `signal` aborts first (`p` goes on). */
function untilDone(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function isCasFailure(err: unknown): boolean {
  const m = String((err as Error)?.message ?? err);
  return /wrong last sequence|key exists|10071/.test(m);
}
