/**
 * Runs a rollout from its stored state: stages in order, pairs of a stage with bounded parallelism,
 * each pair through its steps (steps.ts). Every completed step is written to KV before the next one
 * starts, and every node is recorded as patched before the agent is asked, so a controller killed at
 * any point resumes at the first step not completed (agent calls are idempotent) and a rollback
 * never forgets a node.
 */

import { setMaxListeners } from "node:events";
import { AgentCallError } from "../agents/index.js";
import type { EngineDeps, Halt, RolloutOutcome, StepContext, StepResult } from "./engine_types.js";
import { RolloutError } from "./errors.js";
import { finishRun } from "./failure_policy.js";
import type { Failure, PairState, RolloutRecord } from "./state_types.js";
import { runStep } from "./step_handlers.js";
import type { PairStep } from "./steps.js";
import type { LoadedRollout } from "./store.js";

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
      return await finishRun(
        {
          deps: this.deps,
          record,
          pairs: this.#pairs,
          savePair: (p) => this.#savePair(p),
          saveRecord: () => this.#saveRecord(),
        },
        this.#haltReason,
      );
    } finally {
      clearInterval(deadline);
    }
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
      const result = await this.#attempt(state, index, step);
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

  /** Runs one step; a call that throws (an agent failed) fails the step, unless the run is being torn down. */
  async #attempt(state: PairState, index: number, step: PairStep): Promise<StepResult> {
    try {
      return await runStep(this.#context(state, index), step);
    } catch (err) {
      if (this.#hard.signal.aborted) return { kind: "halted" };
      const coded = err instanceof RolloutError || err instanceof AgentCallError ? err : null;
      const failure: Failure = {
        pair: state.pair,
        node: typeof coded?.context.node === "string" ? coded.context.node : "",
        gate: step.kind,
        value: err instanceof Error ? err.message : String(err),
        code: coded?.code ?? "EAGENT",
      };
      return { kind: "failed", failure };
    }
  }

  #context(state: PairState, index: number): StepContext {
    return {
      deps: this.deps,
      record: this.#record,
      state,
      index,
      signal: this.#hard.signal,
      halt: this.#halt.signal,
      pollMs: this.#pollMs,
      halted: () => this.#haltReason !== null,
      savePair: () => this.#savePair(state),
    };
  }
}
