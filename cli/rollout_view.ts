/** How rollouts look to a human: dry-run steps, progress lines, a live block on terminals. */
import type { Discovery, Plan, RolloutEvent, Stage } from "../controller/rollout/index.js";
import { describeStep, formatDuration, pairSteps } from "../controller/rollout/index.js";
import type { Output } from "./output.js";

function gateSummary(plan: Plan): string {
  const g = plan.gates;
  const parts: string[] = [];
  if (g.heartbeatGap) parts.push(`heartbeatGap ≤${g.heartbeatGap.intervals} intervals (${g.heartbeatGap.mode})`);
  if (g.probes) parts.push(`probes (${g.probes.mode})`);
  if (g.noRestart) parts.push(`noRestart (${g.noRestart.mode})`);
  if (g.patchActive) parts.push(`patchActive (${g.patchActive.mode})`);
  for (const m of g.metrics) parts.push(`${m.name} ${m.op} ${m.value} (${m.mode})`);
  return parts.join(", ") || "none";
}

function selector(plan: Plan): string {
  return Object.entries(plan.target)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

/** The exact steps a plan would run, as lines. `found` is null when the cluster could not be heard. */
export function dryRunLines(plan: Plan, bundleId: string, stages: Stage[], found: Discovery | null): string[] {
  const out = [
    `rollout plan ${plan.source} (dry run: nothing is touched)`,
    `cluster ${plan.cluster}, bundle ${bundleId} (${plan.bundle}), target ${selector(plan)}`,
    `order ${plan.order}, failure policy ${plan.failurePolicy}, progress deadline ${formatDuration(plan.progressDeadlineMs)}, consistency ${plan.consistency}`,
    `gates: ${gateSummary(plan)}`,
  ];
  if (!found) out.push("cluster not heard: node names and roles are read when the rollout runs");
  for (const stage of stages) {
    out.push(
      `${stage.name}: ${stage.pairs.length} pair(s), ${stage.maxParallel} at a time, soak ${formatDuration(stage.soakMs)}`,
    );
    for (const pair of stage.pairs) {
      const nodes = found?.pairNodes[pair];
      const who = nodes ? nodes.map((n) => `${n} ${found?.roles[n] ?? "?"}`).join(", ") : "nodes unknown";
      out.push(`  pair ${pair} (${who})`);
      pairSteps(plan.order, stage.soakMs).forEach((step, i) => {
        out.push(`    ${i + 1}. ${describeStep(step, bundleId)}`);
      });
    }
  }
  return out;
}

function failureText(f: { pair: string; node: string; gate: string; value: string }): string {
  return `pair ${f.pair}${f.node ? ` node ${f.node}` : ""} gate ${f.gate}: ${f.value}`;
}

/** One plain line for an event, or null for events only the live view shows. */
export function eventLine(e: RolloutEvent): string | null {
  switch (e.type) {
    case "rollout.started":
      return `rollout ${e.rollout} ${e.resumed ? "resumed" : "started"}: bundle ${e.bundleId}, ${e.stages.map((s) => `${s.name} (${s.pairs.length})`).join(", ")}`;
    case "stage.started":
      return `${e.stage}: ${e.pairs.join(", ")}`;
    case "step.started":
      return null;
    case "step.done":
      return `  ${e.pair} step ${e.index + 1} ${e.step}${e.node ? ` on ${e.node}` : ""}: ${e.detail}`;
    case "soak.progress":
      return null;
    case "gate.observed":
      return `  ${e.pair} observe-only gate ${e.result.gate} on ${e.result.node} would fail: ${e.result.value}`;
    case "roles.changed":
      return `  ${e.pair} roles changed: active ${e.before?.active ?? "?"} → ${e.now.active}, standby ${e.before?.standby ?? "?"} → ${e.now.standby}`;
    case "pair.done":
      return `  ${e.pair} done`;
    case "pair.failed":
      return `  FAILED ${failureText(e.failure)}`;
    case "rollback.started":
      return `rolling back ${e.pairs.join(", ")} (${e.reason})`;
    case "rollback.node":
      return `  reverted ${e.pair}/${e.node}: ${e.ok ? "ok" : "FAILED"} ${e.detail}`;
    case "rollout.paused":
      return `rollout ${e.rollout} paused${e.failure ? ` after ${failureText(e.failure)}` : ""}; continue with: hotpatch rollout resume ${e.rollout} --cluster ${e.cluster}`;
    case "rollout.done":
      return `rollout ${e.rollout} done`;
    case "rollout.failed":
      return `rollout ${e.rollout} failed: ${failureText(e.failure)}; rolled back: ${e.rolledBack.join(", ") || "nothing"}`;
    case "rollout.aborted":
      return `rollout ${e.rollout} aborted (${e.reason === "deadline" ? "no progress before the deadline" : "requested"}); rolled back: ${e.rolledBack.join(", ") || "nothing"}`;
  }
}

interface PairLine {
  step: string;
  soak: string;
  gates: string;
}

/** Prints events: JSON lines, plain lines, or plain lines plus a live block on a terminal. */
export class RolloutPrinter {
  readonly #pairs = new Map<string, PairLine>();
  #header = "";
  #done = 0;
  #total = 0;
  #lastPlainSoak = new Map<string, number>();

  constructor(private readonly out: Output) {}

  event(e: RolloutEvent): void {
    if (this.out.json) {
      this.out.record(e);
      return;
    }
    if (e.type === "rollout.started") {
      this.#total = e.stages.reduce((n, s) => n + s.pairs.length, 0);
      this.#header = `rollout ${e.rollout} · cluster ${e.cluster} · bundle ${e.bundleId}`;
    }
    if (e.type === "step.started")
      this.#pairs.set(e.pair, { step: `step ${e.index + 1} ${e.step}`, soak: "", gates: "" });
    if (e.type === "soak.progress") {
      const p = this.#pairs.get(e.pair);
      const gates = e.results.map((r) => `${r.node}:${r.gate}=${r.ok ? "ok" : "FAIL"}`).join(" ");
      if (p) {
        p.soak = `${formatDuration(e.remainingMs)} left`;
        p.gates = gates;
      }
      // Without a terminal, a soak shows as a line every 5 s.
      const last = this.#lastPlainSoak.get(e.pair) ?? 0;
      if (!this.out.live && e.atMs - last >= 5000) {
        this.#lastPlainSoak.set(e.pair, e.atMs);
        this.out.line(`  ${e.pair} soak: ${formatDuration(e.remainingMs)} left; ${gates}`);
      }
    }
    if (e.type === "pair.done" || e.type === "pair.failed") {
      if (e.type === "pair.done") this.#done++;
      this.#pairs.delete(e.type === "pair.done" ? e.pair : e.failure.pair);
    }
    const line = eventLine(e);
    if (line !== null) this.out.line(line);
    if (this.out.live) this.#draw(e.type.startsWith("rollout.") && e.type !== "rollout.started");
  }

  #draw(final: boolean): void {
    if (final) {
      this.out.redraw([]);
      return;
    }
    const lines = [`${this.#header} · ${this.#done}/${this.#total} pairs done`];
    const shown = [...this.#pairs.entries()].slice(0, 20);
    for (const [pair, p] of shown)
      lines.push(`  ${pair.padEnd(16)} ${p.step.padEnd(24)} ${p.soak.padEnd(10)} ${p.gates}`);
    if (this.#pairs.size > shown.length) lines.push(`  … ${this.#pairs.size - shown.length} more pairs in progress`);
    this.out.redraw(lines);
  }
}
