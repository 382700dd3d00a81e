/** The rollout engine's outside world, its outcomes, and what each step handler is given. */

import type { AgentApi } from "../agents/index.js";
import type { ClusterView } from "../cluster/index.js";
import type { BundleArchive } from "./bundle_archive.js";
import type { RolloutError } from "./errors.js";
import type { RolloutEventBody } from "./events.js";
import type { Failure, PairState, RolloutRecord } from "./state_types.js";
import type { RolloutStore } from "./store.js";

/** What the engine needs from the outside. */
export interface EngineDeps {
  /** Where every step's result is written before the next step starts. */
  store: Pick<RolloutStore, "savePair" | "saveRecord">;
  /** The cluster as its heartbeats show it. */
  view: Pick<ClusterView, "now" | "node" | "health">;
  /** The agent of a node. */
  agent: (node: string) => AgentApi;
  /** The bundle to stage (read from plan.bundle). */
  bundle: BundleArchive;
  /** Receives every event. */
  emit: (e: RolloutEventBody) => void;
  /** Audit identity sent to agents. */
  actor: string;
  /** How often soaks evaluate gates, ms. */
  pollMs?: number;
}

/** How a run ended. */
export type RolloutOutcome =
  | { kind: "done" }
  | { kind: "failed"; failure: Failure; rolledBack: string[]; rollbackErrors: string[] }
  | { kind: "paused"; failure: Failure | null }
  | { kind: "aborted"; reason: "requested" | "deadline"; rolledBack: string[]; rollbackErrors: string[] }
  | { kind: "lease-lost"; error: RolloutError };

/** Why the run is stopping, first cause wins (an abort or a lost lease overrides). */
export type Halt =
  | { kind: "failure"; failure: Failure }
  | { kind: "pause" }
  | { kind: "abort"; reason: "requested" | "deadline" }
  | { kind: "lease-lost"; error: RolloutError };

/** How one step ended. */
export type StepResult =
  | { kind: "ok"; node: string; detail: string }
  | { kind: "failed"; failure: Failure }
  | { kind: "halted" };

/** What a step handler works with. */
export interface StepContext {
  deps: EngineDeps;
  record: RolloutRecord;
  /** The pair's state; a handler changes it and saves it with `savePair`. */
  state: PairState;
  /** Index of the step in `state.steps`. */
  index: number;
  /** Cancels agent calls in flight (abort, lost lease). */
  signal: AbortSignal;
  /** Ends waits (soaks, a switchover's wait for heartbeats) at once. */
  halt: AbortSignal;
  /** How often waits look again, ms. */
  pollMs: number;
  /** True once the run is stopping: a handler must not start touching a node. */
  halted(): boolean;
  /** Writes the pair's state (not after the lease was lost). */
  savePair(): Promise<void>;
}

/** A failed step: `gate` failed on `node` of the context's pair with `value`. */
export function stepFailed(
  ctx: StepContext,
  node: string,
  gate: string,
  value: string,
  code = "EGATE_FAILED",
): StepResult {
  return { kind: "failed", failure: { pair: ctx.state.pair, node, gate, value, code } };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
