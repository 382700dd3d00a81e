/**
 * The soak step: the gates judged on the patched nodes' heartbeats until the soak's time is over
 * and every gate of every node was judged on data from since it began, or until an enforced gate
 * fails. The soak's start and baseline are stored, so a resumed rollout soaks on from them.
 */
import { afterPendingIo } from "../../common/index.js";
import { type StepContext, type StepResult, sleep, stepFailed } from "./engine_types.js";
import { baselineOf, evaluateGates, firstEnforcedFailure, gateCount } from "./gates.js";
import type { GateResult } from "./state_types.js";

export async function soak(ctx: StepContext, ms: number): Promise<StepResult> {
  const { state, index, deps } = ctx;
  const { plan, bundleId } = ctx.record;
  const view = deps.view;
  const nodes = [...state.patched];
  if (!state.soak || state.soak.index !== index) {
    const baseline: Record<string, ReturnType<typeof baselineOf>> = {};
    for (const n of nodes) baseline[n] = baselineOf(view.node(state.pair, n));
    state.soak = { index, startedAtMs: view.now(), baseline };
    await ctx.savePair();
  }
  const started = state.soak;
  const observed = new Set<string>();
  let lastReport = 0;
  const evaluate = (now: number): GateResult[] =>
    nodes.flatMap((n) =>
      evaluateGates(plan.gates, {
        node: n,
        view: view.node(state.pair, n),
        nowMs: now,
        sinceMs: started.startedAtMs,
        baseline: started.baseline[n] ?? [],
        bundleId,
      }),
    );
  for (;;) {
    let now = view.now();
    let results = evaluate(now);
    if (firstEnforcedFailure(results)) {
      // After this controller was held up (GC, a busy CPU) its poll timer runs before the heartbeats
      // that came meanwhile are read, and every node would look silent: judge again once they are.
      await new Promise<void>((r) => afterPendingIo(r));
      now = view.now();
      results = evaluate(now);
    }
    for (const r of results) {
      if (!r.ok && r.mode === "observe" && !observed.has(`${r.node}/${r.gate}`)) {
        observed.add(`${r.node}/${r.gate}`);
        deps.emit({ type: "gate.observed", pair: state.pair, result: r });
      }
    }
    const remainingMs = Math.max(0, started.startedAtMs + ms - now);
    if (now - lastReport >= 1000) {
      lastReport = now;
      deps.emit({ type: "soak.progress", pair: state.pair, index, remainingMs, results });
    }
    const bad = firstEnforcedFailure(results);
    if (bad) return stepFailed(ctx, bad.node, bad.gate, bad.value);
    // The soak ends once its time is over, every patched node has reported since it began, and
    // every gate of every node has been judged on data from since then.
    const fresh =
      nodes.every((n) => (view.node(state.pair, n)?.receivedAtMs ?? 0) > started.startedAtMs) &&
      results.length > 0 &&
      results.length === nodes.length * gateCount(plan.gates);
    if (remainingMs === 0 && fresh) {
      deps.emit({ type: "soak.progress", pair: state.pair, index, remainingMs: 0, results });
      return { kind: "ok", node: "", detail: results.map((r) => `${r.node} ${r.gate}: ${r.value}`).join("; ") };
    }
    if (ctx.halt.aborted) return { kind: "halted" };
    await sleep(ctx.pollMs, ctx.halt);
  }
}
