/** Errors of drills. Each carries a stable `code`, a `context` object and the `cause`. */

import { CodedError } from "../../common/index.js";

/** Stable codes of drill errors. */
export type DrillErrorCode =
  /** The options are wrong (a bad name, `kill` with a switchover, a timeout out of range, ...). */
  | "EBAD_ARGUMENT"
  /** No heartbeats from the pair: wrong cluster or pair name, or its agents are down. */
  | "EPAIR_NOT_FOUND"
  /** The pair is not healthy (not exactly one active and one standby heartbeating, or a sick service); a drill must start from a healthy pair. */
  | "EPAIR_UNHEALTHY"
  /** The heartbeat does not name the process to kill (an agent too old to announce its pid, or a service that is not running). */
  | "ENO_PID"
  /** The process to kill is not on this host (or is this very process): run the drill on the node's host. */
  | "ENOT_LOCAL"
  /** An agent call failed. */
  | "EAGENT"
  /** The controller did not see the old active fail (or step down) in time. */
  | "ENO_DETECTION"
  /** The peer did not become active in time. */
  | "ENO_TAKEOVER"
  /** The caller's restore callback failed. */
  | "ERESTORE"
  /** The drill was aborted by its caller or ran out of time elsewhere. */
  | "ECANCELLED";

/** A failure with a stable code, what it was about, and its cause. */
export class DrillError extends CodedError<DrillErrorCode> {
  override readonly name = "DrillError";
}
