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
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { HooksConfig, RoleName } from "../config/types.js";
import { AgentError } from "../errors.js";
import { runCommand } from "./hooks.js";
import { RoleState } from "./role_state.js";
import type { NodeRole, RoleController, RoleListener } from "./types.js";

/** The lease value stored in KV. */
export interface LeaseValue {
  /** Node holding the lease, "" when released. */
  holder: string;
  /** When the lease expires unless renewed, ms since the epoch (informational across hosts; also checked). */
  expiresAtMs: number;
  /** Node that released it (on a switchover), when holder is "". */
  releasedBy?: string;
}

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

/** What this node knows of the lease: a discriminated union, so a holder always has a revision and a renewal time. */
type LeaseView =
  | { kind: "holding"; revision: number; lastRenewSentAt: number }
  | { kind: "watching"; revision: number; since: number }
  | { kind: "none" };

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

  constructor(
    private readonly nc: NatsConnection,
    private readonly s: LeaseSettings,
    private readonly env: Record<string, string>,
    private readonly log: (msg: string, err?: unknown) => void,
  ) {}

  get role(): NodeRole {
    return this.state.role;
  }

  /** The lease as stored now (for status and tests), or null. */
  async readLease(): Promise<LeaseValue | null> {
    const kv = await this.bucket();
    const e = await kv.get(this.s.key);
    if (e?.operation !== "PUT" || e.length === 0) return null;
    return e.json<LeaseValue>();
  }

  async start(): Promise<void> {
    const loop = () => {
      if (this.stopped) return;
      this.tickTimer = setTimeout(() => {
        this.busy = this.tick().finally(loop);
      }, this.s.renewMs);
    };
    this.busy = this.tick()
      .then(() => this.fence())
      .finally(loop);
  }

  /**
   * A node that starts without the lease runs the demote hook once: its service may still act as
   * active, left so by a previous agent run that was killed (nothing else would ever demote it,
   * and the peer takes over when that run's lease expires). Never throws.
   */
  private async fence(): Promise<void> {
    if (this.state.role === "active" || !this.s.hooks.demote) return;
    await runCommand(this.s.hooks.demote, "demote hook", this.env).catch((err) =>
      this.log("demote hook at start failed", err),
    );
  }

  /**
   * Stops following the lease. An active node steps down first (demote hook) and releases the
   * lease, so its peer takes over at once; otherwise the peer would take over a lease ttl later
   * while this node's service, with no agent left to demote it, still acted as active.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    await this.busy.catch(() => undefined);
    if (this.view.kind === "holding" && this.kv) await this.stepDown(this.kv, "agent stopping");
    this.clearDemoteTimer();
  }

  /** Demotes (role, then hook) and releases the lease by compare-and-swap; a failed release only delays the peer. */
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
      this.kv = await new Kvm(js).create(this.s.bucket, { history: 1 });
    }
    return this.kv;
  }

  private encode(v: LeaseValue): string {
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
    this.demoteTimer = setTimeout(
      () => void this.demote(`could not renew the lease for ${this.s.demoteAfterMs} ms`),
      wait,
    );
  }

  /** Steps down at once: the role first, then the hook (whose failure is reported, never undoes the demotion). */
  private demote(reason: string): Promise<void> {
    this.clearDemoteTimer();
    const was = this.state.role;
    this.view = { kind: "none" };
    this.state.set("standby", reason);
    if (was !== "active" || !this.s.hooks.demote) return Promise.resolve();
    return runCommand(this.s.hooks.demote, "demote hook", this.env).then(
      () => undefined,
      (err) => this.log("demote hook failed", err),
    );
  }

  private becomeActive(revision: number, sentAt: number, reason: string): void {
    this.view = { kind: "holding", revision, lastRenewSentAt: sentAt };
    this.armDemote(sentAt);
    this.state.set("active", reason);
    if (this.s.hooks.promote) {
      runCommand(this.s.hooks.promote, "promote hook", this.env).catch((err) => this.log("promote hook failed", err));
    }
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
        try {
          const revision = await kv.update(this.s.key, this.mine(sentAt), this.view.revision);
          if (this.view.kind !== "holding") return; // demoted while the request was out
          this.view = { kind: "holding", revision, lastRenewSentAt: sentAt };
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
    const sentAt = monotonicMs();
    if (entry?.operation !== "PUT" || entry.length === 0) {
      const rev = entry
        ? await kv.update(this.s.key, this.mine(sentAt), entry.revision)
        : await kv.create(this.s.key, this.mine(sentAt));
      this.becomeActive(rev, sentAt, "lease was free");
      return;
    }
    const v = entry.json<LeaseValue>();
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

  async switchover(target: RoleName, signal?: AbortSignal): Promise<NodeRole> {
    signal?.throwIfAborted();
    await this.busy.catch(() => undefined);
    if (target === this.state.role) return target;
    const kv = await this.bucket().catch((err) => {
      throw new AgentError(
        "ENATS",
        `cannot reach the lease bucket ${this.s.bucket}: ${(err as Error).message}`,
        {},
        { cause: err },
      );
    });
    if (target === "standby") {
      await this.stepDown(kv, "switchover");
      return this.state.role;
    }
    const v = await this.readLease();
    if (v && v.holder !== "" && v.holder !== this.s.node) {
      throw new AgentError(
        "EPRECONDITION",
        `node ${v.holder} holds the pair's lease; switch it to standby first (it releases the lease and this node takes over)`,
      );
    }
    await this.challenge(kv, true);
    if (this.state.role !== "active")
      throw new AgentError("EPRECONDITION", "could not take the lease (another node took it first); try again");
    return this.state.role;
  }
}

function isCasFailure(err: unknown): boolean {
  const m = String((err as Error)?.message ?? err);
  return /wrong last sequence|key exists|10071/.test(m);
}
