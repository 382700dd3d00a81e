/**
 * How a run ends, once its pairs stopped: done; paused (pairs between steps stay resumable, a
 * failure stays on its pair); aborted (everything this rollout patched is rolled back); or failed,
 * rolled back as the plan's failure policy says (the failed pair, or every patched pair).
 */
import { Outcome } from "../../proto/index.js";
import type { EngineDeps, Halt, RolloutOutcome } from "./engine_types.js";
import type { PairState, RolloutRecord } from "./state_types.js";

/** The run's state, as its end handles it. */
export interface RunState {
  deps: EngineDeps;
  record: RolloutRecord;
  pairs: Map<string, PairState>;
  /** Writes a pair's state (not after the lease was lost). */
  savePair(s: PairState): Promise<void>;
  /** Writes the rollout's record (not after the lease was lost). */
  saveRecord(): Promise<void>;
}

const patchedPairs = (run: RunState) =>
  [...run.pairs.values()].filter((s) => s.patched.length > 0 && s.phase.kind !== "rolled-back");

/** Ends the run for `halt` (null: every pair is done) and says how it ended. */
export async function finishRun(run: RunState, halt: Halt | null): Promise<RolloutOutcome> {
  const { record, deps } = run;
  if (!halt) {
    record.status = { kind: "done" };
    await run.saveRecord();
    deps.emit({ type: "rollout.done" });
    return { kind: "done" };
  }
  if (halt.kind === "lease-lost") return { kind: "lease-lost", error: halt.error };
  // Pairs interrupted between steps stay resumable.
  for (const s of run.pairs.values()) {
    if (s.phase.kind === "running") {
      s.phase = { kind: "paused", failure: null };
      await run.savePair(s);
    }
  }
  if (halt.kind === "pause") return pause(run);
  if (halt.kind === "abort") {
    const reason = halt.reason === "deadline" ? "progress deadline passed" : "abort requested";
    const { rolledBack, errors } = await rollback(run, patchedPairs(run), reason);
    record.status = { kind: "aborted", reason: halt.reason };
    await run.saveRecord();
    deps.emit({ type: "rollout.aborted", reason: halt.reason, rolledBack });
    return { kind: "aborted", reason: halt.reason, rolledBack, rollbackErrors: errors };
  }
  const { failure } = halt;
  const failed = run.pairs.get(failure.pair);
  const pairs =
    record.plan.failurePolicy === "rollback-all"
      ? patchedPairs(run)
      : failed && failed.patched.length > 0
        ? [failed]
        : [];
  const { rolledBack, errors } = await rollback(
    run,
    pairs,
    `gate ${failure.gate} failed on ${failure.pair}/${failure.node}`,
  );
  if (failed && failed.phase.kind !== "rolled-back") {
    failed.phase = { kind: "rolled-back", failure };
    await run.savePair(failed);
  }
  record.status = { kind: "failed", failure };
  await run.saveRecord();
  deps.emit({ type: "rollout.failed", failure, rolledBack });
  return { kind: "failed", failure, rolledBack, rollbackErrors: errors };
}

/** A paused run: a failed pair (the pause policy) keeps its failure, paused. */
async function pause(run: RunState): Promise<RolloutOutcome> {
  const failed = [...run.pairs.values()].find((s) => s.phase.kind === "failed");
  const f = failed?.phase.kind === "failed" ? failed.phase.failure : null;
  if (failed) {
    failed.phase = { kind: "paused", failure: f };
    await run.savePair(failed);
  }
  run.record.status = { kind: "paused", failure: f };
  await run.saveRecord();
  run.deps.emit({ type: "rollout.paused", failure: f });
  return { kind: "paused", failure: f };
}

/** Reverts the patch on every node these pairs patched, all at once. */
async function rollback(
  run: RunState,
  pairs: PairState[],
  reason: string,
): Promise<{ rolledBack: string[]; errors: string[] }> {
  const { deps, record } = run;
  const rolledBack: string[] = [];
  const errors: string[] = [];
  if (pairs.length === 0) return { rolledBack, errors };
  deps.emit({ type: "rollback.started", pairs: pairs.map((p) => p.pair), reason });
  // Rollback must not be cancelled by the abort that asked for it.
  const signal = new AbortController().signal;
  const revertOn = async (s: PairState, node: string): Promise<boolean> => {
    try {
      const res = await deps.agent(node).revert(record.bundleId, record.plan.target, deps.actor, signal);
      const bad = res.results.filter((r) => r.outcome === Outcome.OUTCOME_FAILED);
      const detail = bad.length
        ? bad.map((r) => `pid ${r.pid}: ${r.errorCode} ${r.message}`).join("; ")
        : `${res.results.length} process(es) reverted`;
      if (bad.length) errors.push(`${s.pair}/${node}: ${detail}`);
      else rolledBack.push(`${s.pair}/${node}`);
      deps.emit({ type: "rollback.node", pair: s.pair, node, ok: bad.length === 0, detail });
      return bad.length === 0;
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      errors.push(`${s.pair}/${node}: ${msg}`);
      deps.emit({ type: "rollback.node", pair: s.pair, node, ok: false, detail: msg });
      return false;
    }
  };
  await Promise.all(
    pairs.map(async (s) => {
      const ok = (await Promise.all(s.patched.map((node) => revertOn(s, node)))).every(Boolean);
      if (ok) {
        const failure = s.phase.kind === "failed" ? s.phase.failure : null;
        s.phase = { kind: "rolled-back", failure };
        await run.savePair(s);
      }
    }),
  );
  return { rolledBack: rolledBack.sort(), errors };
}
