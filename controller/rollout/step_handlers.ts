/**
 * One handler per kind of pair step (steps.ts): check, stage, patch (standby first, then the other
 * node), switchover and soak (soak.ts). Each works on the pair's state through its StepContext and
 * says how the step ended; the engine's loop records the result.
 */
import { afterPendingIo } from "../../common/index.js";
import { Outcome, Role } from "../../proto/index.js";
import { type StepContext, type StepResult, sleep, stepFailed } from "./engine_types.js";
import { soak } from "./soak.js";
import type { PairRoles } from "./state_types.js";
import type { PairStep } from "./steps.js";

function roleName(r: Role): string {
  return r === Role.ROLE_ACTIVE ? "active" : r === Role.ROLE_STANDBY ? "standby" : "unknown";
}

/** Reads both nodes' roles from their agents (the truth, not a heartbeat that may be old). */
async function readRoles(ctx: StepContext): Promise<PairRoles | { invalid: string }> {
  const { state, deps } = ctx;
  const infos = await Promise.all(state.nodes.map((n) => deps.agent(n).info(ctx.signal)));
  const desc = infos.map((i, k) => `${state.nodes[k]}=${roleName(i.role)}`).join(" ");
  const active = infos.findIndex((i) => i.role === Role.ROLE_ACTIVE);
  const standby = infos.findIndex((i) => i.role === Role.ROLE_STANDBY);
  if (active < 0 || standby < 0) return { invalid: desc };
  const roles = { active: state.nodes[active] as string, standby: state.nodes[standby] as string };
  if (state.roles && (state.roles.active !== roles.active || state.roles.standby !== roles.standby)) {
    deps.emit({ type: "roles.changed", pair: state.pair, before: state.roles, now: roles });
  }
  state.roles = roles;
  return roles;
}

/** Both nodes heard recently and healthy, one active and one standby by their agents. */
async function check(ctx: StepContext): Promise<StepResult> {
  const { state, deps } = ctx;
  const gapIntervals = ctx.record.plan.gates.heartbeatGap?.intervals ?? 3;
  // Heartbeats received while this controller was held up are read before their age is judged.
  await new Promise<void>((r) => afterPendingIo(r));
  for (const node of state.nodes) {
    const h = deps.view.health(state.pair, node, gapIntervals);
    if (!h) return stepFailed(ctx, node, "precheck", "no heartbeat received", "ECLUSTER_NOT_READY");
    if (!h.alive) return stepFailed(ctx, node, "precheck", `heartbeat age ${h.ageMs}ms`, "ECLUSTER_NOT_READY");
    if (h.sick.length) {
      const names = h.sick.map((s) => s.name).join(", ");
      return stepFailed(ctx, node, "precheck", `unhealthy: ${names}`, "ECLUSTER_NOT_READY");
    }
  }
  const roles = await readRoles(ctx);
  if ("invalid" in roles) return stepFailed(ctx, "", "roles", roles.invalid, "ECLUSTER_NOT_READY");
  return { kind: "ok", node: "", detail: `active ${roles.active}, standby ${roles.standby}` };
}

/** The bundle uploaded to both agents. */
async function stage(ctx: StepContext): Promise<StepResult> {
  const { state, deps } = ctx;
  const res = await Promise.all(state.nodes.map((n) => deps.agent(n).stage(deps.bundle, ctx.signal)));
  return {
    kind: "ok",
    node: "",
    detail: res.map((r, k) => `${state.nodes[k]} ${r.alreadyStaged ? "already staged" : "staged"}`).join(", "),
  };
}

/**
 * The patch applied on one node: the standby (first patch of the pair) or the node not patched yet.
 * The node is chosen once and recorded, with the node marked patched, before the agent is asked.
 */
async function patch(ctx: StepContext, which: "standby" | "remaining"): Promise<StepResult> {
  const { state, deps, record, index } = ctx;
  let target = state.targets[String(index)];
  if (target === undefined) {
    const roles = await readRoles(ctx);
    if ("invalid" in roles) return stepFailed(ctx, "", "roles", roles.invalid);
    if (which === "standby") target = roles.standby;
    else {
      const first = Object.values(state.targets)[0];
      target = state.nodes.find((n) => n !== first) as string;
    }
    state.targets[String(index)] = target;
  }
  if (!state.patched.includes(target)) state.patched.push(target);
  await ctx.savePair();
  if (ctx.halted()) return { kind: "halted" };
  const { plan, bundleId } = record;
  const res = await deps.agent(target).apply(bundleId, plan.target, plan.consistency, deps.actor, ctx.signal);
  const bad = res.results.filter((r) => r.outcome === Outcome.OUTCOME_FAILED || r.outcome === Outcome.OUTCOME_SKIPPED);
  if (res.results.length === 0)
    return stepFailed(ctx, target, "apply", "no process matched the target selector", "EAGENT");
  if (bad.length > 0) {
    const detail = bad.map((r) => `pid ${r.pid}: ${r.errorCode} ${r.message}`).join("; ");
    return stepFailed(ctx, target, "apply", detail, "EAGENT");
  }
  const done = res.results.filter((r) => r.outcome === Outcome.OUTCOME_DONE).length;
  return { kind: "ok", node: target, detail: `${done} patched, ${res.results.length - done} already patched` };
}

/** The patched node made active and the other standby, until both nodes' heartbeats say so. */
async function switchover(ctx: StepContext): Promise<StepResult> {
  const { state, deps } = ctx;
  const patched = Object.values(state.targets)[0] as string;
  const other = state.nodes.find((n) => n !== patched) as string;
  const roles = await readRoles(ctx);
  if ("invalid" in roles) return stepFailed(ctx, "", "roles", roles.invalid);
  if (roles.active !== patched) {
    await deps.agent(roles.active).switchover("standby", deps.actor, ctx.signal);
    await deps.agent(patched).switchover("active", deps.actor, ctx.signal);
  }
  const deadline = deps.view.now() + 10_000;
  for (;;) {
    const a = deps.view.node(state.pair, patched);
    const b = deps.view.node(state.pair, other);
    if (a?.role === "active" && b?.role === "standby") break;
    if (deps.view.now() > deadline) {
      const said = `${patched}=${a?.role ?? "?"} ${other}=${b?.role ?? "?"}`;
      return stepFailed(ctx, patched, "switchover", `heartbeats still say ${said} after 10s`);
    }
    if (ctx.halt.aborted) return { kind: "halted" };
    await sleep(ctx.pollMs, ctx.halt);
  }
  state.roles = { active: patched, standby: other };
  return { kind: "ok", node: patched, detail: `${patched} is active now` };
}

/** Runs one step with the handler of its kind. */
export function runStep(ctx: StepContext, step: PairStep): Promise<StepResult> {
  switch (step.kind) {
    case "check":
      return check(ctx);
    case "stage":
      return stage(ctx);
    case "patch-standby":
      return patch(ctx, "standby");
    case "patch-remaining":
      return patch(ctx, "remaining");
    case "switchover":
      return switchover(ctx);
    case "soak":
      return soak(ctx, step.ms);
  }
}
