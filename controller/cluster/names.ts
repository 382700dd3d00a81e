/** Names that become NATS subject tokens and KV keys: letters, digits, `_` and `-` only. */
import { NAME_PATTERN, NAME_RULE } from "../../proto/index.js";
import { ClusterError } from "./errors.js";

/** Throws EBAD_NAME unless `value` is a usable name. */
export function checkName(what: string, value: string): string {
  if (!NAME_PATTERN.test(value)) {
    throw new ClusterError("EBAD_NAME", `${what} ${JSON.stringify(value)} must be ${NAME_RULE}`, { what, value });
  }
  return value;
}
