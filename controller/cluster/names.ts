/** Names that become NATS subject tokens and KV keys: letters, digits, `_` and `-` only. */
import { ClusterError } from "./errors.js";

/** What a cluster, pair or node name may look like. */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Throws EBAD_NAME unless `value` is a usable name. */
export function checkName(what: string, value: string): string {
  if (!NAME_PATTERN.test(value)) {
    throw new ClusterError(
      "EBAD_NAME",
      `${what} ${JSON.stringify(value)} must be 1 to 64 letters, digits, '_' or '-'`,
      { what, value },
    );
  }
  return value;
}

/** Subject all heartbeats of a cluster are published under. */
export function heartbeatWildcard(cluster: string): string {
  return `hotpatch.hb.${checkName("cluster", cluster)}.>`;
}
