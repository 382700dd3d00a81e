/**
 * Runs a rollout from its stored state: stages in order, pairs of a stage with bounded parallelism,
 * each pair through its steps (steps.ts). Every completed step is written to KV before the next one
 * starts, and every node is recorded as patched before the agent is asked, so a controller killed at
 * any point resumes at the first step not completed (agent calls are idempotent) and a rollback
 * never forgets a node.
 */

import { setMaxListeners } from "node:events";
import { afterPendingIo } from "../../common/index.js";
import { Outcome, Role } from "../../proto/index.js";
import type { ClusterView } from "../cluster/index.js";
import type { AgentApi } from "./agents.js";
import type { BundleArchive } from "./bundle_archive.js";
import { RolloutError } from "./errors.js";
import type { RolloutEventBody } from "./events.js";
import { baselineOf, evaluateGates, firstEnforcedFailure, gateCount } from "./gates.js";
import type { Failure, GateResult, PairRoles, PairState, RolloutRecord } from "./state_types.js";
import type { PairStep } from "./steps.js";
import type { LoadedRollout, RolloutStore } from "./store.js";

/** What the engine needs from the outside. */
export interface EngineDeps {
  store: RolloutStore;
  view: ClusterView;
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

type StepResult =
  | { kind: "ok"; node: string; detail: string }
  | { kind: "failed"; failure: Failure }
  | { kind: "halted" };

/** Why the run is stopping, first cause wins. */
type Halt =
  | { kind: "failure"; failure: Failure }
  | { kind: "pause" }
  | { kind: "abort"; reason: "requested" | "deadline" }
  | { kind: "lease-lost"; error: RolloutError };

function sleep(ms: number, signal: AbortSignal): Promise<void> {
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

function roleName(r: Role): string {
  return r === Role.ROLE_ACTIVE ? "active" : r === Role.ROLE_STANDBY ? "standby" : "unknown";
}

export class RolloutEngine {
  readonly #record: RolloutRecord;
  readonly #pairs: Map<string, PairState>;
  /** Stops soaks and keeps new steps from starting. */
  readonly #halt = new AbortController();
  /** Also cancels agent calls in flight (abort, lost lease). */
  readonly #hard = new AbortController();
  #haltReason: Halt | null = null;
  #lastProgress: number;
  readonly #pollMs: number;

  constructor(
    private readonly deps: EngineDeps,
    loaded: LoadedRollout,
  ) {
    this.#record = loaded.record;
    this.#pairs = loaded.pairs;
    this.#lastProgress = deps.view.now();
    this.#pollMs = deps.pollMs ?? 100;
    // Every parallel pair waits on these signals at once.
    setMaxListeners(0, this.#halt.signal, this.#hard.signal);
  }

  get record(): RolloutRecord {
    return this.#record;
  }

  /** Asks the run to stop at the next step boundary (soaks stop at once); `resume` goes on. */
  pause(): void {
    this.#stop({ kind: "pause" });
  }

  /** Rolls back everything this rollout patched, at once. */
  abort(reason: "requested" | "deadline" = "requested"): void {
    this.#stop({ kind: "abort", reason });
  }

  /** The lease is gone: stop touching anything at once. */
  leaseLost(error: RolloutError): void {
    this.#stop({ kind: "lease-lost", error });
  }

  #stop(h: Halt): void {
    // An abort or a lost lease overrides a pause or a failure still being handled.
    const weight = (x: Halt) => (x.kind === "lease-lost" ? 3 : x.kind === "abort" ? 2 : 1);
    if (this.#haltReason && weight(this.#haltReason) >= weight(h)) return;
    this.#haltReason = h;
    this.#halt.abort();
    if (h.kind === "abort" || h.kind === "lease-lost") this.#hard.abort();
  }

  async #savePair(state: PairState): Promise<void> {
    if (this.#haltReason?.kind === "lease-lost") return;
    await this.deps.store.savePair(this.#record.id, state);
  }

  async #saveRecord(): Promise<void> {
    if (this.#haltReason?.kind === "lease-lost") return;
    await this.deps.store.saveRecord(this.#record);
  }

  #pairState(pair: string): PairState {
    let s = this.#pairs.get(pair);
    if (!s) {
      const stage = this.#record.stages.find((st) => st.pairs.includes(pair));
      const nodes = this.#record.pairNodes[pair];
      if (!stage || !nodes)
        throw new RolloutError("EROLLOUT_STATE", `pair ${pair} is not part of rollout ${this.#record.id}`);
      s = {
        pair,
        nodes,
        steps: [],
        next: 0,
        roles: null,
        patched: [],
        targets: {},
        soak: null,
        phase: { kind: "pending" },
        history: [],
      };
      this.#pairs.set(pair, s);
    }
    return s;
  }

  /** Runs the rollout to its end (done, failed, paused, aborted). */
  async run(stepsFor: (soakMs: number) => PairStep[]): Promise<RolloutOutcome> {
    const { record } = this;
    const deadline = setInterval(() => {
      if (this.deps.view.now() - this.#lastProgress > record.plan.progressDeadlineMs) this.abort("deadline");
    }, 250);
    try {
      record.status = { kind: "running" };
      await this.#saveRecord();
      for (const stage of record.stages) {
        if (this.#haltReason) break;
        const todo = stage.pairs.filter((p) => this.#pairState(p).phase.kind !== "done");
        if (todo.length === 0) continue;
        this.deps.emit({ type: "stage.started", stage: stage.name, pairs: todo });
        const queue = [...todo];
        const worker = async () => {
          for (let pair = queue.shift(); pair !== undefined && !this.#haltReason; pair = queue.shift()) {
            const state = this.#pairState(pair);
            if (state.steps.length === 0) state.steps = stepsFor(stage.soakMs);
            await this.#runPair(state);
          }
        };
        await Promise.all(Array.from({ length: Math.min(stage.maxParallel, todo.length) }, worker));
      }
      return await this.#finish();
    } finally {
      clearInterval(deadline);
    }
  }

  async #finish(): Promise<RolloutOutcome> {
    const h = this.#haltReason;
    const record = this.#record;
    if (!h) {
      record.status = { kind: "done" };
      await this.#saveRecord();
      this.deps.emit({ type: "rollout.done" });
      return { kind: "done" };
    }
    if (h.kind === "lease-lost") return { kind: "lease-lost", error: h.error };
    // Pairs interrupted between steps stay resumable.
    for (const s of this.#pairs.values()) {
      if (s.phase.kind === "running") {
        s.phase = { kind: "paused", failure: null };
        await this.#savePair(s);
      }
    }
    if (h.kind === "pause") {
      const failure = [...this.#pairs.values()].find((s) => s.phase.kind === "failed");
      const f = failure?.phase.kind === "failed" ? failure.phase.failure : null;
      if (failure) {
        failure.phase = { kind: "paused", failure: f };
        await this.#savePair(failure);
      }
      record.status = { kind: "paused", failure: f };
      await this.#saveRecord();
      this.deps.emit({ type: "rollout.paused", failure: f });
      return { kind: "paused", failure: f };
    }
    if (h.kind === "abort") {
      const pairs = [...this.#pairs.values()].filter((s) => s.patched.length > 0 && s.phase.kind !== "rolled-back");
      const { rolledBack, errors } = await this.#rollback(
        pairs,
        h.reason === "deadline" ? "progress deadline passed" : "abort requested",
      );
      record.status = { kind: "aborted", reason: h.reason };
      await this.#saveRecord();
      this.deps.emit({ type: "rollout.aborted", reason: h.reason, rolledBack });
      return { kind: "aborted", reason: h.reason, rolledBack, rollbackErrors: errors };
    }
    const policy = record.plan.failurePolicy;
    const failed = this.#pairs.get(h.failure.pair);
    const pairs =
      policy === "rollback-all"
        ? [...this.#pairs.values()].filter((s) => s.patched.length > 0 && s.phase.kind !== "rolled-back")
        : failed && failed.patched.length > 0
          ? [failed]
          : [];
    const { rolledBack, errors } = await this.#rollback(
      pairs,
      `gate ${h.failure.gate} failed on ${h.failure.pair}/${h.failure.node}`,
    );
    if (failed && failed.phase.kind !== "rolled-back") {
      failed.phase = { kind: "rolled-back", failure: h.failure };
      await this.#savePair(failed);
    }
    record.status = { kind: "failed", failure: h.failure };
    await this.#saveRecord();
    this.deps.emit({ type: "rollout.failed", failure: h.failure, rolledBack });
    return { kind: "failed", failure: h.failure, rolledBack, rollbackErrors: errors };
  }

  /** Reverts the patch on every node these pairs patched, all at once. */
  async #rollback(pairs: PairState[], reason: string): Promise<{ rolledBack: string[]; errors: string[] }> {
    const rolledBack: string[] = [];
    const errors: string[] = [];
    if (pairs.length === 0) return { rolledBack, errors };
    this.deps.emit({ type: "rollback.started", pairs: pairs.map((p) => p.pair), reason });
    // Rollback must not be cancelled by the abort that asked for it.
    const signal = new AbortController().signal;
    await Promise.all(
      pairs.map(async (s) => {
        let ok = true;
        await Promise.all(
          s.patched.map(async (node) => {
            try {
              const res = await this.deps
                .agent(node)
                .revert(this.#record.bundleId, this.#record.plan.target, this.deps.actor, signal);
              const bad = res.results.filter((r) => r.outcome === Outcome.OUTCOME_FAILED);
              const detail = bad.length
                ? bad.map((r) => `pid ${r.pid}: ${r.errorCode} ${r.message}`).join("; ")
                : `${res.results.length} process(es) reverted`;
              if (bad.length) {
                ok = false;
                errors.push(`${s.pair}/${node}: ${detail}`);
              } else rolledBack.push(`${s.pair}/${node}`);
              this.deps.emit({ type: "rollback.node", pair: s.pair, node, ok: bad.length === 0, detail });
            } catch (err) {
              ok = false;
              const msg = err instanceof Error ? err.message : String(err);
              errors.push(`${s.pair}/${node}: ${msg}`);
              this.deps.emit({ type: "rollback.node", pair: s.pair, node, ok: false, detail: msg });
            }
          }),
        );
        if (ok) {
          const failure = s.phase.kind === "failed" ? s.phase.failure : null;
          s.phase = { kind: "rolled-back", failure };
          await this.#savePair(s);
        }
      }),
    );
    return { rolledBack: rolledBack.sort(), errors };
  }

  async #runPair(state: PairState): Promise<void> {
    if (state.phase.kind === "paused") state.soak = null; // a soak cut short starts over
    state.phase = { kind: "running" };
    await this.#savePair(state);
    while (state.next < state.steps.length) {
      if (this.#haltReason) return;
      const index = state.next;
      const step = state.steps[index] as PairStep;
      this.deps.emit({ type: "step.started", pair: state.pair, index, step: step.kind });
      let result: StepResult;
      try {
        result = await this.#step(state, index, step);
      } catch (err) {
        if (this.#hard.signal.aborted) return;
        const failure: Failure = {
          pair: state.pair,
          node: err instanceof RolloutError && typeof err.context.node === "string" ? err.context.node : "",
          gate: step.kind,
          value: err instanceof Error ? err.message : String(err),
          code: err instanceof RolloutError ? err.code : "EAGENT",
        };
        result = { kind: "failed", failure };
      }
      if (result.kind === "halted") return;
      if (result.kind === "failed") {
        if (this.#hard.signal.aborted) return;
        state.phase = { kind: "failed", failure: result.failure };
        await this.#savePair(state);
        this.deps.emit({ type: "pair.failed", failure: result.failure });
        this.#stop({ kind: "failure", failure: result.failure });
        // A pause policy stops like a pause; the failure stays on the pair.
        if (this.#record.plan.failurePolicy === "pause") this.#haltReason = { kind: "pause" };
        return;
      }
      state.history.push({ index, kind: step.kind, node: result.node, atMs: this.deps.view.now() });
      state.next = index + 1;
      if (step.kind === "soak") state.soak = null;
      this.#lastProgress = this.deps.view.now();
      await this.#savePair(state);
      this.deps.emit({
        type: "step.done",
        pair: state.pair,
        index,
        step: step.kind,
        node: result.node,
        detail: result.detail,
      });
    }
    state.phase = { kind: "done" };
    await this.#savePair(state);
    this.deps.emit({ type: "pair.done", pair: state.pair });
  }

  #fail(state: PairState, node: string, gate: string, value: string, code = "EGATE_FAILED"): StepResult {
    return { kind: "failed", failure: { pair: state.pair, node, gate, value, code } };
  }

  /** Reads both nodes' roles from their agents (the truth, not a heartbeat that may be old). */
  async #readRoles(state: PairState): Promise<PairRoles | { invalid: string }> {
    const infos = await Promise.all(state.nodes.map((n) => this.deps.agent(n).info(this.#hard.signal)));
    const desc = infos.map((i, k) => `${state.nodes[k]}=${roleName(i.role)}`).join(" ");
    const active = infos.findIndex((i) => i.role === Role.ROLE_ACTIVE);
    const standby = infos.findIndex((i) => i.role === Role.ROLE_STANDBY);
    if (active < 0 || standby < 0) return { invalid: desc };
    const roles = { active: state.nodes[active] as string, standby: state.nodes[standby] as string };
    if (state.roles && (state.roles.active !== roles.active || state.roles.standby !== roles.standby)) {
      this.deps.emit({ type: "roles.changed", pair: state.pair, before: state.roles, now: roles });
    }
    state.roles = roles;
    return roles;
  }

  async #step(state: PairState, index: number, step: PairStep): Promise<StepResult> {
    const { plan, bundleId } = this.#record;
    const signal = this.#hard.signal;
    switch (step.kind) {
      case "check": {
        const gapIntervals = plan.gates.heartbeatGap?.intervals ?? 3;
        // Heartbeats received while this controller was held up are read before their age is judged.
        await new Promise<void>((r) => afterPendingIo(r));
        for (const node of state.nodes) {
          const h = this.deps.view.health(state.pair, node, gapIntervals);
          if (!h) return this.#fail(state, node, "precheck", "no heartbeat received", "ECLUSTER_NOT_READY");
          if (!h.alive) return this.#fail(state, node, "precheck", `heartbeat age ${h.ageMs}ms`, "ECLUSTER_NOT_READY");
          if (h.sick.length) {
            const names = h.sick.map((s) => s.name).join(", ");
            return this.#fail(state, node, "precheck", `unhealthy: ${names}`, "ECLUSTER_NOT_READY");
          }
        }
        const roles = await this.#readRoles(state);
        if ("invalid" in roles) return this.#fail(state, "", "roles", roles.invalid, "ECLUSTER_NOT_READY");
        return { kind: "ok", node: "", detail: `active ${roles.active}, standby ${roles.standby}` };
      }
      case "stage": {
        const res = await Promise.all(state.nodes.map((n) => this.deps.agent(n).stage(this.deps.bundle, signal)));
        return {
          kind: "ok",
          node: "",
          detail: res.map((r, k) => `${state.nodes[k]} ${r.alreadyStaged ? "already staged" : "staged"}`).join(", "),
        };
      }
      case "patch-standby":
      case "patch-remaining": {
        let target = state.targets[String(index)];
        if (target === undefined) {
          const roles = await this.#readRoles(state);
          if ("invalid" in roles) return this.#fail(state, "", "roles", roles.invalid);
          if (step.kind === "patch-standby") target = roles.standby;
          else {
            const first = Object.values(state.targets)[0];
            target = state.nodes.find((n) => n !== first) as string;
          }
          state.targets[String(index)] = target;
        }
        if (!state.patched.includes(target)) state.patched.push(target);
        await this.#savePair(state);
        if (this.#haltReason) return { kind: "halted" };
        const res = await this.deps
          .agent(target)
          .apply(bundleId, plan.target, plan.consistency, this.deps.actor, signal);
        const bad = res.results.filter(
          (r) => r.outcome === Outcome.OUTCOME_FAILED || r.outcome === Outcome.OUTCOME_SKIPPED,
        );
        if (res.results.length === 0)
          return this.#fail(state, target, "apply", "no process matched the target selector", "EAGENT");
        if (bad.length > 0) {
          return this.#fail(
            state,
            target,
            "apply",
            bad.map((r) => `pid ${r.pid}: ${r.errorCode} ${r.message}`).join("; "),
            "EAGENT",
          );
        }
        const done = res.results.filter((r) => r.outcome === Outcome.OUTCOME_DONE).length;
        return { kind: "ok", node: target, detail: `${done} patched, ${res.results.length - done} already patched` };
      }
      case "switchover": {
        const patched = Object.values(state.targets)[0] as string;
        const roles = await this.#readRoles(state);
        if ("invalid" in roles) return this.#fail(state, "", "roles", roles.invalid);
        if (roles.active !== patched) {
          await this.deps.agent(roles.active).switchover("standby", this.deps.actor, signal);
          await this.deps.agent(patched).switchover("active", this.deps.actor, signal);
        }
        // Wait for both nodes' heartbeats to report the new roles.
        const deadline = this.deps.view.now() + 10_000;
        for (;;) {
          const a = this.deps.view.node(state.pair, patched);
          const other = state.nodes.find((n) => n !== patched) as string;
          const b = this.deps.view.node(state.pair, other);
          if (a?.role === "active" && b?.role === "standby") break;
          if (this.deps.view.now() > deadline)
            return this.#fail(
              state,
              patched,
              "switchover",
              `heartbeats still say ${patched}=${a?.role ?? "?"} ${other}=${b?.role ?? "?"} after 10s`,
            );
          if (this.#halt.signal.aborted) return { kind: "halted" };
          await sleep(this.#pollMs, this.#halt.signal);
        }
        state.roles = { active: patched, standby: state.nodes.find((n) => n !== patched) as string };
        return { kind: "ok", node: patched, detail: `${patched} is active now` };
      }
      case "soak":
        return this.#soak(state, index, step.ms);
    }
  }

  async #soak(state: PairState, index: number, ms: number): Promise<StepResult> {
    const { plan, bundleId } = this.#record;
    const view = this.deps.view;
    const nodes = [...state.patched];
    if (!state.soak || state.soak.index !== index) {
      const baseline: Record<string, ReturnType<typeof baselineOf>> = {};
      for (const n of nodes) baseline[n] = baselineOf(view.node(state.pair, n));
      state.soak = { index, startedAtMs: view.now(), baseline };
      await this.#savePair(state);
    }
    const soak = state.soak;
    const observed = new Set<string>();
    let lastReport = 0;
    const evaluate = (now: number): GateResult[] =>
      nodes.flatMap((n) =>
        evaluateGates(plan.gates, {
          node: n,
          view: view.node(state.pair, n),
          nowMs: now,
          sinceMs: soak.startedAtMs,
          baseline: soak.baseline[n] ?? [],
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
          this.deps.emit({ type: "gate.observed", pair: state.pair, result: r });
        }
      }
      const remainingMs = Math.max(0, soak.startedAtMs + ms - now);
      if (now - lastReport >= 1000) {
        lastReport = now;
        this.deps.emit({ type: "soak.progress", pair: state.pair, index, remainingMs, results });
      }
      const bad = firstEnforcedFailure(results);
      if (bad) return this.#fail(state, bad.node, bad.gate, bad.value);
      // The soak ends once its time is over, every patched node has reported since it began, and
      // every gate of every node has been judged on data from since then.
      const fresh =
        nodes.every((n) => (view.node(state.pair, n)?.receivedAtMs ?? 0) > soak.startedAtMs) &&
        results.length > 0 &&
        results.length === nodes.length * gateCount(plan.gates);
      if (remainingMs === 0 && fresh) {
        this.deps.emit({ type: "soak.progress", pair: state.pair, index, remainingMs: 0, results });
        return { kind: "ok", node: "", detail: results.map((r) => `${r.node} ${r.gate}: ${r.value}`).join("; ") };
      }
      if (this.#halt.signal.aborted) return { kind: "halted" };
      await sleep(this.#pollMs, this.#halt.signal);
    }
  }
}
