/** Errors of rollouts. Each carries a stable `code`, a `context` object and the `cause`. */

import { CodedError, type FieldIssue } from "../../common/index.js";

/** Stable codes of rollout errors. */
export type RolloutErrorCode =
  /** The plan file could not be read. */
  | "EPLAN_READ"
  /** The plan is not valid; `context.issues` names every bad field. */
  | "EPLAN_INVALID"
  /** The bundle could not be read or has no usable manifest. */
  | "EBUNDLE_READ"
  /** Another controller holds the cluster's rollout lease. */
  | "ELEASE_HELD"
  /** This controller lost the lease while it was rolling out. */
  | "ELEASE_LOST"
  /** No rollout with that id in the cluster. */
  | "EROLLOUT_NOT_FOUND"
  /** The rollout is in a state the command cannot act on (e.g. resume of a finished rollout). */
  | "EROLLOUT_STATE"
  /** A pair lacks nodes, heartbeats or known roles before the rollout starts. */
  | "ECLUSTER_NOT_READY"
  /** A gate failed. */
  | "EGATE_FAILED"
  /** An agent call failed. */
  | "EAGENT"
  /** NATS or its key-value store failed. */
  | "ENATS";

/** One problem in a plan: where, and what is wrong. */
export type PlanIssue = FieldIssue;

/** A failure with a stable code, what it was about, and its cause. */
export class RolloutError extends CodedError<RolloutErrorCode> {
  override readonly name: string = "RolloutError";
}

/** A plan with one or more bad fields; the message lists them all. */
export class PlanError extends RolloutError {
  override readonly name = "PlanError";
  constructor(
    readonly source: string,
    readonly issues: PlanIssue[],
  ) {
    super("EPLAN_INVALID", `${source}: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`, {
      source,
      issues,
    });
  }
}
