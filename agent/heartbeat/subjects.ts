/** NATS subjects of the agent. */
import type { Identity } from "../events.js";

/** Where a node publishes its heartbeats. */
export function heartbeatSubject(id: Identity): string {
  return `hotpatch.hb.${id.cluster}.${id.pair}.${id.node}`;
}

/** Where a node publishes its events. */
export function eventSubject(id: Identity): string {
  return `hotpatch.ev.${id.cluster}.${id.pair}.${id.node}`;
}

/** KV key of a pair's lease. */
export function leaseKey(id: Identity): string {
  return `lease.${id.cluster}.${id.pair}`;
}
