/** Events of a rollout: printed with `--json`, published on NATS `hotpatch.rollout.<cluster>.<id>`. */

import type { Failure, GateResult, PairRoles } from "./state_types.js";
import type { PairStep } from "./steps.js";

/** What every event carries. */
export interface EventBase {
  /** Rollout id. */
  rollout: string;
  /** Cluster. */
  cluster: string;
  /** When it happened (ms since epoch). */
  atMs: number;
}

/** Everything a rollout reports, one variant per kind (`type`). */
export type RolloutEventBody =
  | { type: "rollout.started"; bundleId: string; stages: { name: string; pairs: string[] }[]; resumed: boolean }
  | { type: "stage.started"; stage: string; pairs: string[] }
  | { type: "step.started"; pair: string; index: number; step: PairStep["kind"] }
  | { type: "step.done"; pair: string; index: number; step: PairStep["kind"]; node: string; detail: string }
  | { type: "soak.progress"; pair: string; index: number; remainingMs: number; results: GateResult[] }
  | { type: "gate.observed"; pair: string; result: GateResult }
  | { type: "roles.changed"; pair: string; before: PairRoles | null; now: PairRoles }
  | { type: "pair.done"; pair: string }
  | { type: "pair.failed"; failure: Failure }
  | { type: "rollback.started"; pairs: string[]; reason: string }
  | { type: "rollback.node"; pair: string; node: string; ok: boolean; detail: string }
  | { type: "rollout.paused"; failure: Failure | null }
  | { type: "rollout.done" }
  | { type: "rollout.failed"; failure: Failure; rolledBack: string[] }
  | { type: "rollout.aborted"; reason: "requested" | "deadline"; rolledBack: string[] };

/** One event. */
export type RolloutEvent = EventBase & RolloutEventBody;

/** Subject rollout events are published on (the NATS contract's). */
export { rolloutSubject } from "../../proto/index.js";
