/**
 * Rollout state in the cluster's JetStream KV bucket `hotpatch-rollout-<cluster>`:
 *   `rollout.<id>`              the RolloutRecord
 *   `rollout.<id>.pair.<pair>`  one PairState per pair
 *   `rollout.<id>.control`      pause/abort requests from other commands
 *   `lease`                     the cluster's rollout lease (lease.ts)
 * Writes of the lease holder are compare-and-swap on the revision it last wrote, so a controller
 * that lost its lease cannot overwrite its successor's state.
 */
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { rolloutBucket, rolloutControlKey, rolloutKey, rolloutPairKey } from "../../proto/index.js";
import { checkName } from "../cluster/index.js";
import { RolloutError } from "./errors.js";
import type { ControlRecord, PairState, RolloutRecord } from "./state_types.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Name of the KV bucket of a cluster. */
export function bucketName(cluster: string): string {
  return rolloutBucket(checkName("cluster", cluster));
}

/** Rollout ids: `r` + UTC time + random suffix, usable as a KV key token. */
export function newRolloutId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
  return `r${t}-${crypto.randomUUID().slice(0, 6)}`;
}

const ID_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

/** A rollout and all its pairs, as loaded. */
export interface LoadedRollout {
  record: RolloutRecord;
  pairs: Map<string, PairState>;
}

export class RolloutStore {
  readonly #revisions = new Map<string, number>();

  private constructor(
    readonly kv: KV,
    readonly cluster: string,
  ) {}

  /** Opens (creating if needed) the bucket of `cluster`. */
  static async open(nc: NatsConnection, cluster: string): Promise<RolloutStore> {
    try {
      const kv = await new Kvm(nc).create(bucketName(cluster), { history: 5 });
      return new RolloutStore(kv, cluster);
    } catch (cause) {
      throw new RolloutError(
        "ENATS",
        `cannot open the KV bucket ${bucketName(cluster)} (is JetStream enabled on the NATS server?): ${(cause as Error).message}`,
        { cluster },
        { cause },
      );
    }
  }

  async #write(key: string, value: unknown): Promise<void> {
    const data = enc.encode(JSON.stringify(value));
    const rev = this.#revisions.get(key);
    try {
      const next = rev === undefined ? await this.kv.create(key, data) : await this.kv.update(key, data, rev);
      this.#revisions.set(key, next);
    } catch (cause) {
      throw new RolloutError(
        "ENATS",
        `cannot write ${key} (someone else changed it, or NATS is unreachable): ${(cause as Error).message}`,
        { key },
        { cause },
      );
    }
  }

  async #read<T>(key: string): Promise<T | null> {
    const entry = await this.kv.get(key);
    if (entry?.operation !== "PUT") return null;
    this.#revisions.set(key, entry.revision);
    return JSON.parse(dec.decode(entry.value)) as T;
  }

  /** Saves the rollout header. */
  saveRecord(record: RolloutRecord): Promise<void> {
    return this.#write(rolloutKey(record.id), record);
  }

  /** Saves one pair's state. */
  savePair(id: string, state: PairState): Promise<void> {
    return this.#write(rolloutPairKey(id, state.pair), state);
  }

  /** Loads a rollout and its pairs; throws EROLLOUT_NOT_FOUND when there is none. */
  async load(id: string): Promise<LoadedRollout> {
    if (!ID_PATTERN.test(id)) {
      throw new RolloutError("EROLLOUT_NOT_FOUND", `rollout id ${JSON.stringify(id)} is not a valid id`, { id });
    }
    const record = await this.#read<RolloutRecord>(rolloutKey(id));
    if (!record) {
      throw new RolloutError("EROLLOUT_NOT_FOUND", `no rollout ${id} in cluster ${this.cluster}`, {
        id,
        cluster: this.cluster,
      });
    }
    const pairs = new Map<string, PairState>();
    for (const stage of record.stages) {
      for (const pair of stage.pairs) {
        const state = await this.#read<PairState>(rolloutPairKey(id, pair));
        if (state) pairs.set(pair, state);
      }
    }
    return { record, pairs };
  }

  /** Ids of every rollout kept for the cluster. */
  async list(): Promise<string[]> {
    const ids: string[] = [];
    for await (const key of await this.kv.keys("rollout.*")) ids.push(key.slice("rollout.".length));
    return ids.sort();
  }

  /** The control requests of a rollout (none yet: both false). */
  async control(id: string): Promise<ControlRecord> {
    const entry = await this.kv.get(rolloutControlKey(id));
    if (entry?.operation !== "PUT") return { pause: false, abort: false, by: "", atMs: 0 };
    return JSON.parse(dec.decode(entry.value)) as ControlRecord;
  }

  /** Writes control requests (any command may; last write wins). */
  async setControl(id: string, control: ControlRecord): Promise<void> {
    await this.kv.put(rolloutControlKey(id), enc.encode(JSON.stringify(control)));
  }

  /** Calls `onChange` with every later write of the control key, until `signal` aborts. */
  async watchControl(id: string, onChange: (c: ControlRecord) => void, signal: AbortSignal): Promise<void> {
    const it = await this.kv.watch({ key: rolloutControlKey(id) });
    const stop = () => it.stop();
    signal.addEventListener("abort", stop, { once: true });
    void (async () => {
      for await (const e of it) {
        if (e.operation === "PUT") onChange(JSON.parse(dec.decode(e.value)) as ControlRecord);
      }
    })().finally(() => signal.removeEventListener("abort", stop));
  }
}
