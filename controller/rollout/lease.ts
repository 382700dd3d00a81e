/**
 * The per-cluster rollout lease, in the cluster's KV bucket under key `lease`. nats-server 2.9 has
 * no per-key TTL, so the value carries its holder and expiry; a lease is taken over only when its
 * expiry has passed (or at once when its holder ran on this same host and its process is gone),
 * always by compare-and-swap on the key's revision, so two controllers can never both believe they
 * hold it. The holder renews it well before it expires.
 */
import { hostname } from "node:os";
import type { KV } from "@nats-io/kv";
import { ROLLOUT_LEASE_KEY, type RolloutLeaseValue } from "../../proto/index.js";
import { RolloutError } from "./errors.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** True when `pid` names a live process on this host. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A lease is free once expired, or at once when its holder ran on this host and its process is gone
 * (a controller killed here can be resumed here without waiting out the ttl).
 */
function isFree(v: RolloutLeaseValue | null, nowMs: number): boolean {
  return !v || v.expiresAtMs <= nowMs || (v.host === hostname() && v.pid !== process.pid && !alive(v.pid));
}

function decode(bytes: Uint8Array): RolloutLeaseValue | null {
  try {
    return JSON.parse(dec.decode(bytes)) as RolloutLeaseValue;
  } catch {
    return null;
  }
}

/** Options of acquireLease. */
export interface LeaseOptions {
  /** How long the lease lasts without renewal. */
  ttlMs: number;
  /** Rollout id recorded in the lease. */
  rolloutId: string;
  /** Cluster, named in the refusal message. */
  cluster?: string;
  /** Clock. */
  now?: () => number;
}

/** A held lease; renews itself until released. */
export class Lease {
  #revision: number;
  #timer: NodeJS.Timeout | null = null;
  #lost = false;
  #renewing: Promise<void> = Promise.resolve();
  #onLost: (err: RolloutError) => void = () => undefined;

  private constructor(
    private readonly kv: KV,
    readonly value: RolloutLeaseValue,
    revision: number,
    private readonly opts: LeaseOptions,
  ) {
    this.#revision = revision;
  }

  /** Takes the lease or throws ELEASE_HELD naming the holder and when it expires. */
  static async acquire(kv: KV, opts: LeaseOptions): Promise<Lease> {
    const now = opts.now ?? Date.now;
    const value: RolloutLeaseValue = {
      holder: `${hostname()}:${process.pid}:${crypto.randomUUID()}`,
      host: hostname(),
      pid: process.pid,
      rolloutId: opts.rolloutId,
      expiresAtMs: now() + opts.ttlMs,
    };
    const held = (current: RolloutLeaseValue | null) =>
      new RolloutError(
        "ELEASE_HELD",
        current
          ? `cluster rollout lease is held by ${current.host} pid ${current.pid} (rollout ${current.rolloutId}) until ${new Date(current.expiresAtMs).toISOString()}; wait for it to finish or expire, or run \`hotpatch rollout abort ${current.rolloutId}${opts.cluster ? ` --cluster ${opts.cluster}` : ""}\``
          : "cluster rollout lease was taken by another controller at the same moment",
        { holder: current },
      );
    const entry = await kv.get(ROLLOUT_LEASE_KEY);
    let revision: number;
    if (entry?.operation !== "PUT") {
      try {
        revision = await kv.create(ROLLOUT_LEASE_KEY, enc.encode(JSON.stringify(value)));
      } catch {
        const again = await kv.get(ROLLOUT_LEASE_KEY);
        throw held(again ? decode(again.value) : null);
      }
    } else {
      const current = decode(entry.value);
      if (!isFree(current, now())) throw held(current);
      try {
        revision = await kv.update(ROLLOUT_LEASE_KEY, enc.encode(JSON.stringify(value)), entry.revision);
      } catch {
        const again = await kv.get(ROLLOUT_LEASE_KEY);
        throw held(again ? decode(again.value) : null);
      }
    }
    const lease = new Lease(kv, value, revision, opts);
    lease.#schedule();
    return lease;
  }

  /** Reads who holds the lease, or null when it is free (absent or expired). */
  static async read(kv: KV, now: () => number = Date.now): Promise<RolloutLeaseValue | null> {
    const entry = await kv.get(ROLLOUT_LEASE_KEY);
    if (entry?.operation !== "PUT") return null;
    const v = decode(entry.value);
    return isFree(v, now()) ? null : v;
  }

  /** Calls `fn` once if a renewal fails (the lease was taken, or NATS was gone for longer than the ttl). */
  whenLost(fn: (err: RolloutError) => void): void {
    this.#onLost = fn;
  }

  /** False once a renewal failed. */
  get held(): boolean {
    return !this.#lost;
  }

  #schedule(): void {
    this.#timer = setTimeout(
      () => {
        this.#renewing = this.#renew();
      },
      Math.max(50, Math.floor(this.opts.ttlMs / 3)),
    );
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    const now = this.opts.now ?? Date.now;
    this.value.expiresAtMs = now() + this.opts.ttlMs;
    try {
      this.#revision = await this.kv.update(ROLLOUT_LEASE_KEY, enc.encode(JSON.stringify(this.value)), this.#revision);
      this.#schedule();
    } catch (cause) {
      this.#lost = true;
      this.#onLost(
        new RolloutError(
          "ELEASE_LOST",
          "lost the cluster rollout lease (another controller took it, or NATS was unreachable)",
          {},
          { cause },
        ),
      );
    }
  }

  /** Stops renewing and frees the lease (only if it is still ours). */
  async release(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#renewing;
    if (this.#lost) return;
    this.#lost = true;
    await this.kv.delete(ROLLOUT_LEASE_KEY, { previousSeq: this.#revision }).catch(() => undefined);
  }
}
