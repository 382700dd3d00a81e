/** Errors of the cluster view. Each carries a stable `code`, a `context` object and the `cause`. */

import { CodedError } from "../../common/index.js";

/** Stable codes of cluster view errors. */
export type ClusterErrorCode =
  /** The NATS server could not be reached. */
  | "ENATS_CONNECT"
  /** A cluster, pair or node name cannot be used in a NATS subject or KV key. */
  | "EBAD_NAME";

/** A failure with a stable code, what it was about, and its cause. */
export class ClusterError extends CodedError<ClusterErrorCode> {
  override readonly name = "ClusterError";
}
