/**
 * Who may publish and subscribe to what on the hotpatch NATS account: the least each identity's
 * job needs, derived from the NATS contract (proto/nats.ts) that the agent and controller use,
 * never written out a second time. A KV write is a publish to `$KV.<bucket>.<key>`; KV reads and watches
 * go through the JetStream API (`$JS.API.…`), whose subjects name the stream and, for direct gets
 * and filtered consumers, the key, so those too are narrowed to what the identity may read.
 */
import {
  clusterHeartbeatSubjects,
  eventSubject,
  heartbeatSubject,
  pairHeartbeatSubjects,
  pairLeaseKey,
  rolloutBucket,
  rolloutSubject,
} from "../../proto/index.js";

/** One identity on the hotpatch account. `name` is its user name and the root of its reply inbox. */
export type NatsIdentity =
  /** An agent: its own heartbeats and events, its pair's lease. */
  | { kind: "node"; name: string; cluster: string; pair: string; node: string; leaseBucket: string }
  /** A rollout controller of one cluster: reads heartbeats and events, owns the cluster's rollout bucket. */
  | { kind: "controller"; name: string; cluster: string }
  /** Reads heartbeats, events, rollout state and leases of one cluster; writes nothing. */
  | { kind: "viewer"; name: string; cluster: string; leaseBucket: string }
  /** Creates the lease bucket before agents start (agents may not create streams); keep its key offline. */
  | { kind: "admin"; name: string; leaseBuckets: string[] };

/** Subjects an identity may publish to and subscribe to (NATS wildcards `*` and `>`). */
export interface Permissions {
  publish: string[];
  subscribe: string[];
}

/**
 * The reply inbox prefix of an identity: every request it makes (JetStream API calls included) gets
 * its answer on `<prefix>.<id>`, and only it may subscribe there, so no identity reads another's replies.
 */
export function inboxPrefix(name: string): string {
  return `_INBOX.${name}`;
}

const kvSubject = (bucket: string, key: string) => `$KV.${bucket}.${key}`;
const stream = (bucket: string) => `KV_${bucket}`;

/** JetStream API calls that read keys matching `keys` (a key or key wildcard) of `bucket`: get, and watch. */
function kvRead(bucket: string, keys: string): string[] {
  const s = stream(bucket);
  return [
    `$JS.API.INFO`,
    `$JS.API.STREAM.INFO.${s}`,
    // A direct get names the key in its subject; a plain message get carries it in the body.
    `$JS.API.DIRECT.GET.${s}.${kvSubject(bucket, keys)}`,
    `$JS.API.STREAM.MSG.GET.${s}`,
    // A watch is an ordered consumer whose filter is in the subject (server 2.9+ create API).
    `$JS.API.CONSUMER.CREATE.${s}.*.${kvSubject(bucket, keys)}`,
    `$JS.API.CONSUMER.INFO.${s}.*`,
    `$JS.API.CONSUMER.DELETE.${s}.*`,
  ];
}

/** The permissions of `id`. */
export function permissionsFor(id: NatsIdentity): Permissions {
  const inbox = `${inboxPrefix(id.name)}.>`;
  switch (id.kind) {
    case "node": {
      const self = { cluster: id.cluster, pair: id.pair, node: id.node };
      const lease = pairLeaseKey(self);
      return {
        publish: [
          heartbeatSubject(self),
          eventSubject(self),
          kvSubject(id.leaseBucket, lease),
          ...kvRead(id.leaseBucket, lease),
        ],
        // Its pair's heartbeats (the peer watch), and its own replies.
        subscribe: [pairHeartbeatSubjects(id.cluster, id.pair), inbox],
      };
    }
    case "controller": {
      const bucket = rolloutBucket(id.cluster);
      return {
        publish: [
          rolloutSubject(id.cluster, "*"),
          kvSubject(bucket, ">"),
          ...kvRead(bucket, ">"),
          // The controller makes its cluster's rollout bucket on first use.
          `$JS.API.STREAM.CREATE.${stream(bucket)}`,
        ],
        subscribe: [
          clusterHeartbeatSubjects(id.cluster),
          eventSubject({ cluster: id.cluster, pair: "*", node: "*" }),
          inbox,
        ],
      };
    }
    case "viewer":
      return {
        publish: [
          ...kvRead(rolloutBucket(id.cluster), ">"),
          ...kvRead(id.leaseBucket, pairLeaseKey({ cluster: id.cluster, pair: "*" })),
        ],
        subscribe: [
          clusterHeartbeatSubjects(id.cluster),
          eventSubject({ cluster: id.cluster, pair: "*", node: "*" }),
          rolloutSubject(id.cluster, "*"),
          inbox,
        ],
      };
    case "admin":
      return {
        publish: ["$JS.API.INFO", ...id.leaseBuckets.flatMap((b) => [`$JS.API.STREAM.*.${stream(b)}`])],
        subscribe: [inbox],
      };
  }
}
