/**
 * What the agent does, independent of gRPC: every method takes plain requests and a call context
 * (who asks, a signal that fires at the deadline or on cancel) and throws AgentError with a stable code.
 */
import { hostname } from "node:os";
import {
  type ApplyRequest,
  type Event,
  type InfoResponse,
  Outcome,
  PatchState,
  type ProcessInfo,
  type ProcessPatch,
  type ProcessResult,
  Consistency as ProtoConsistency,
  type RevertRequest,
  Role,
  type StageBundleResponse,
  type StatusResponse,
} from "../../proto/index.js";
import type { AuditLog, AuditRecord } from "../audit/audit_log.js";
import type { AgentConfig, RoleName } from "../config/types.js";
import type { Consistency, Engine, PatchRecord } from "../engine/types.js";
import { AgentError } from "../errors.js";
import type { EventHub } from "../events.js";
import { type FollowRule, FollowRules } from "../follow/follow_rules.js";
import type { AgentMetrics } from "../metrics/metrics.js";
import {
  type BuildIdCache,
  checkSelector,
  listPids,
  matches,
  readProcess,
  selectProcesses,
} from "../procfs/processes.js";
import type { ProcessFacts, Selector } from "../procfs/types.js";
import type { NodeRole, RoleController } from "../roles/types.js";
import type { BundleStore } from "../store/bundle_store.js";
import type { UploadHeader, VerifiedBundle } from "../store/types.js";
import type { AllowList } from "./allow_list.js";
import { KeyedLock, mapLimit } from "./keyed_lock.js";
import { toProcessPatches } from "./patch_states.js";

/** Who asks and until when. */
export interface CallContext {
  /** Client certificate CN, or "insecure". */
  actor: string;
  /** Fires at the call's deadline or when the client cancels. */
  signal: AbortSignal;
}

/** Everything the service works with. */
export interface ServiceDeps {
  config: AgentConfig;
  version: string;
  engine: Engine;
  store: BundleStore;
  audit: AuditLog;
  events: EventHub;
  metrics: AgentMetrics;
  role: RoleController;
  allow: AllowList;
  ids: BuildIdCache;
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
}

/** Role of the schema from the agent's role. */
export function roleToProto(r: NodeRole): Role {
  return r === "active" ? Role.ROLE_ACTIVE : r === "standby" ? Role.ROLE_STANDBY : Role.ROLE_UNKNOWN;
}

function consistencyOf(c: ProtoConsistency): Consistency {
  return c === ProtoConsistency.CONSISTENCY_ENTRY ? "entry" : "strict";
}

function codeOf(err: unknown): string {
  const c = (err as { code?: unknown })?.code;
  return typeof c === "string" ? c : "EINTERNAL";
}

function outcomeName(o: Outcome): string {
  return (
    (
      {
        [Outcome.OUTCOME_DONE]: "done",
        [Outcome.OUTCOME_ALREADY]: "already",
        [Outcome.OUTCOME_SKIPPED]: "skipped",
        [Outcome.OUTCOME_FAILED]: "failed",
      } as Record<number, string>
    )[o] ?? "unspecified"
  );
}

const parallelism = 4;

export class AgentService {
  private readonly locks = new KeyedLock<number>();
  readonly follow: FollowRules;
  /** Last patch states read from the targets, per pid (heartbeats publish these). */
  private readonly states = new Map<number, ProcessPatch[]>();

  constructor(private readonly d: ServiceDeps) {
    this.follow = new FollowRules((id) => d.store.folder(id));
  }

  /** Loads follow rules and re-reads patch states from every allow-listed process (the truth lives in the targets). */
  async recover(): Promise<void> {
    await this.follow.load(await this.d.store.list());
    await this.refreshStates();
  }

  info(): InfoResponse {
    const c = this.d.config;
    return {
      node: c.node,
      pair: c.pair,
      cluster: c.cluster,
      role: roleToProto(this.d.role.role),
      version: this.d.version,
      hostname: hostname(),
    };
  }

  /** Patch states as last read from the targets. */
  patchStates(): ProcessPatch[] {
    return [...this.states.values()].flat();
  }

  private async readPatches(pid: number): Promise<PatchRecord[]> {
    try {
      return await this.d.engine.listPatches(pid);
    } catch {
      return [];
    }
  }

  /** Re-reads the patch states of every running allow-listed process. */
  async refreshStates(signal?: AbortSignal): Promise<void> {
    const seen = new Set<number>();
    for (const pid of await listPids()) {
      signal?.throwIfAborted();
      if (pid === process.pid) continue;
      const p = await readProcess(pid);
      if (!p || !this.d.allow.allows(p.exePath)) continue;
      seen.add(pid);
      const patches = toProcessPatches(pid, await this.readPatches(pid));
      if (patches.length > 0) this.states.set(pid, patches);
      else this.states.delete(pid);
    }
    for (const pid of this.states.keys()) if (!seen.has(pid)) this.states.delete(pid);
  }

  async listProcesses(sel: Selector, ctx: CallContext): Promise<ProcessInfo[]> {
    const procs = await selectProcesses(sel, this.d.ids, ctx.signal);
    return Promise.all(
      procs.map(async (p) => ({
        pid: p.pid,
        exePath: p.exePath,
        buildId: (await this.d.ids.forProcess(p.pid)) ?? "",
        startTime: p.startTime,
        cgroup: p.cgroup,
        patches: toProcessPatches(p.pid, await this.readPatches(p.pid)),
      })),
    );
  }

  private checkAllowed(bundle: VerifiedBundle): void {
    if (!this.d.allow.allows(bundle.manifest.target.path)) {
      throw new AgentError(
        "ENOT_ALLOWED",
        `bundle ${bundle.id} patches ${bundle.manifest.target.path}, which is not on this agent's allow-list (config: allow)`,
        { bundleId: bundle.id, path: bundle.manifest.target.path },
      );
    }
  }

  private async audited<T>(
    rec: Omit<AuditRecord, "result" | "actor">,
    ctx: CallContext,
    work: () => Promise<T>,
    results?: (t: T) => AuditRecord["processes"],
  ): Promise<T> {
    try {
      const out = await work();
      const procs = results?.(out);
      await this.d.audit.append({ ...rec, actor: ctx.actor, result: "ok", ...(procs ? { processes: procs } : {}) });
      return out;
    } catch (err) {
      await this.d.audit.append({
        ...rec,
        actor: ctx.actor,
        result: codeOf(err),
        message: (err as Error).message,
        ...(err instanceof PartialResults ? { processes: err.processes } : {}),
      });
      this.d.metrics.failures.inc({ op: rec.action, code: codeOf(err) });
      throw err;
    }
  }

  async stageBundle(
    h: UploadHeader,
    chunks: AsyncIterable<Uint8Array>,
    ctx: CallContext,
  ): Promise<StageBundleResponse> {
    return this.audited({ action: "stage", request: { ...h } }, ctx, async () => {
      const { bundle, alreadyStaged } = await this.d.store.stage(h, chunks, ctx.signal, (b) => this.checkAllowed(b));
      if (!alreadyStaged)
        this.d.events.emit({
          kind: "bundle.staged",
          patchId: bundle.id,
          state: PatchState.PATCH_STATE_STAGED,
          actor: ctx.actor,
        });
      return { bundleId: bundle.id, alreadyStaged };
    });
  }

  /** Why process `p` cannot take `bundle`, or null when it can. */
  private async mismatch(p: ProcessFacts, bundle: VerifiedBundle): Promise<{ code: string; message: string } | null> {
    const target = bundle.manifest.target;
    const sel: Selector = p.exePath === target.path ? { pid: p.pid } : { pid: p.pid, libraryPath: target.path };
    if (!(await matches(p, sel, this.d.ids))) {
      return {
        code: "ETARGET_MISMATCH",
        message: `process ${p.pid} (${p.exePath}) neither is nor maps ${target.path}, the bundle's target`,
      };
    }
    if (target.buildId && p.exePath === target.path) {
      const id = await this.d.ids.forProcess(p.pid);
      if (id !== target.buildId) {
        return {
          code: "EBUILDID",
          message: `process ${p.pid} runs ${p.exePath} with build-id ${id ?? "(none)"}, the bundle was built for ${target.buildId}`,
        };
      }
    }
    return null;
  }

  /** Applies `bundle` to one process (serialised per process); never throws. */
  private applyOne(
    p: ProcessFacts,
    bundle: VerifiedBundle,
    consistency: Consistency,
    safetyTimeoutMs: number,
    actor: string,
    signal?: AbortSignal,
  ): Promise<ProcessResult> {
    return this.locks.run(p.pid, async () => {
      const result = (outcome: Outcome, errorCode = "", message = "", pauseUs = 0): ProcessResult => {
        this.d.metrics.patchOps.inc({ op: "apply", outcome: outcomeName(outcome) });
        if (outcome === Outcome.OUTCOME_FAILED) this.d.metrics.failures.inc({ op: "apply", code: errorCode });
        return { pid: p.pid, outcome, errorCode, message, pauseUs };
      };
      if (signal?.aborted)
        return result(
          Outcome.OUTCOME_SKIPPED,
          "EDEADLINE",
          "the request's deadline passed before this process was reached",
        );
      const why = await this.mismatch(p, bundle);
      if (why) return result(Outcome.OUTCOME_SKIPPED, why.code, why.message);
      const present = await this.readPatches(p.pid);
      if (present.some((r) => r.id === bundle.id && r.state === "active")) {
        this.states.set(p.pid, toProcessPatches(p.pid, present));
        return result(Outcome.OUTCOME_ALREADY, "", `${bundle.id} is already active in ${p.pid}`);
      }
      try {
        const r = await this.d.engine.applyPatch(
          p.pid,
          { id: bundle.id, soPath: bundle.soPath, functions: bundle.manifest.functions },
          { consistency, safetyTimeoutMs, debugDirs: this.d.config.debugDirs, ...(signal ? { signal } : {}) },
        );
        this.states.set(p.pid, toProcessPatches(p.pid, await this.readPatches(p.pid)));
        if (!r.changed) return result(Outcome.OUTCOME_ALREADY, "", `${bundle.id} is already active in ${p.pid}`);
        this.d.metrics.pauseUs.observe({ op: "apply" }, r.pauseUs);
        this.d.events.emit({
          kind: "patch.applied",
          patchId: bundle.id,
          pid: p.pid,
          state: PatchState.PATCH_STATE_ACTIVE,
          actor,
        });
        return result(Outcome.OUTCOME_DONE, "", "", r.pauseUs);
      } catch (err) {
        this.d.events.emit({
          kind: "patch.failed",
          patchId: bundle.id,
          pid: p.pid,
          errorCode: codeOf(err),
          message: (err as Error).message,
          actor,
        });
        return result(Outcome.OUTCOME_FAILED, codeOf(err), (err as Error).message);
      }
    });
  }

  async apply(req: ApplyRequest, ctx: CallContext): Promise<ProcessResult[]> {
    const sel: Selector = req.selector ?? {};
    return this.audited(
      {
        action: "apply",
        requestedBy: req.requestedBy,
        request: {
          bundleId: req.bundleId,
          selector: sel,
          consistency: consistencyOf(req.consistency),
          followNewProcesses: req.followNewProcesses,
        },
      },
      ctx,
      async () => {
        checkSelector(sel);
        const bundle = await this.d.store.require(req.bundleId);
        this.checkAllowed(bundle);
        const consistency = consistencyOf(req.consistency);
        const safetyTimeoutMs = req.safetyTimeoutMs || this.d.config.safetyTimeoutMs;
        const procs = await selectProcesses(sel, this.d.ids, ctx.signal);
        if (req.followNewProcesses) {
          await this.follow.set({ bundleId: bundle.id, selector: sel, consistency, safetyTimeoutMs, actor: ctx.actor });
        }
        const results = await mapLimit(procs, parallelism, (p) =>
          this.applyOne(p, bundle, consistency, safetyTimeoutMs, ctx.actor, ctx.signal),
        );
        if (ctx.signal.aborted)
          throw new PartialResults(
            "EDEADLINE",
            `the deadline passed after ${results.filter((r) => r.outcome !== Outcome.OUTCOME_SKIPPED).length} of ${results.length} processes; the audit log has each result`,
            results,
          );
        return results;
      },
      (rs) =>
        rs.map((r) => ({
          pid: r.pid,
          outcome: outcomeName(r.outcome),
          ...(r.errorCode ? { errorCode: r.errorCode } : {}),
        })),
    );
  }

  async revert(req: RevertRequest, ctx: CallContext): Promise<ProcessResult[]> {
    const sel: Selector = req.selector ?? {};
    return this.audited(
      {
        action: "revert",
        requestedBy: req.requestedBy,
        request: { bundleId: req.bundleId, selector: sel, unload: req.unload },
      },
      ctx,
      async () => {
        checkSelector(sel);
        const bundle = await this.d.store.require(req.bundleId);
        this.checkAllowed(bundle);
        await this.follow.remove(bundle.id);
        const procs = await selectProcesses(sel, this.d.ids, ctx.signal);
        return mapLimit(procs, parallelism, (p) =>
          this.locks.run(p.pid, async () => {
            const result = (outcome: Outcome, errorCode = "", message = "", pauseUs = 0): ProcessResult => {
              this.d.metrics.patchOps.inc({ op: "revert", outcome: outcomeName(outcome) });
              return { pid: p.pid, outcome, errorCode, message, pauseUs };
            };
            if (ctx.signal.aborted)
              return result(
                Outcome.OUTCOME_SKIPPED,
                "EDEADLINE",
                "the request's deadline passed before this process was reached",
              );
            const present = (await this.readPatches(p.pid)).find((r) => r.id === bundle.id);
            if (!present)
              return result(Outcome.OUTCOME_SKIPPED, "ENOT_FOUND", `${bundle.id} is not present in process ${p.pid}`);
            if (present.state !== "active" && !req.unload)
              return result(Outcome.OUTCOME_ALREADY, "", `${bundle.id} is already ${present.state} in ${p.pid}`);
            try {
              const r = await this.d.engine.revertPatch(p.pid, bundle.id, {
                unload: req.unload,
                debugDirs: this.d.config.debugDirs,
                signal: ctx.signal,
              });
              this.d.metrics.pauseUs.observe({ op: "revert" }, r.pauseUs);
              this.states.set(p.pid, toProcessPatches(p.pid, await this.readPatches(p.pid)));
              this.d.events.emit({
                kind: "patch.reverted",
                patchId: bundle.id,
                pid: p.pid,
                state: req.unload ? PatchState.PATCH_STATE_UNLOADED : PatchState.PATCH_STATE_INACTIVE,
                actor: ctx.actor,
              });
              return result(Outcome.OUTCOME_DONE, "", "", r.pauseUs);
            } catch (err) {
              this.d.metrics.failures.inc({ op: "revert", code: codeOf(err) });
              return result(Outcome.OUTCOME_FAILED, codeOf(err), (err as Error).message);
            }
          }),
        );
      },
      (rs) =>
        rs.map((r) => ({
          pid: r.pid,
          outcome: outcomeName(r.outcome),
          ...(r.errorCode ? { errorCode: r.errorCode } : {}),
        })),
    );
  }

  async status(ctx: CallContext): Promise<StatusResponse> {
    await this.refreshStates(ctx.signal);
    return {
      stagedBundles: await this.d.store.list(),
      patches: this.patchStates(),
      role: roleToProto(this.d.role.role),
    };
  }

  async switchover(
    target: Role,
    requestedBy: string,
    ctx: CallContext,
  ): Promise<{ previous: NodeRole; role: NodeRole }> {
    const previous = this.d.role.role;
    const name: RoleName | null =
      target === Role.ROLE_ACTIVE ? "active" : target === Role.ROLE_STANDBY ? "standby" : null;
    return this.audited(
      { action: "switchover", requestedBy, request: { targetRole: name ?? target } },
      ctx,
      async () => {
        if (!name) throw new AgentError("EINVALID_ARGUMENT", "target_role must be ROLE_ACTIVE or ROLE_STANDBY");
        const role = await this.d.role.switchover(name, ctx.signal);
        return { previous, role };
      },
    );
  }

  /** Applies the follow rules to a process that just exec'd. Returns the results (empty when no rule matched). */
  async onExec(pid: number, execAt: number): Promise<ProcessResult[]> {
    const rules = this.follow.all();
    if (rules.length === 0) return [];
    const p = await readProcess(pid);
    if (!p) return [];
    const out: ProcessResult[] = [];
    for (const rule of rules) {
      if (!(await matches(p, rule.selector, this.d.ids))) continue;
      const bundle = await this.d.store.get(rule.bundleId);
      if (!bundle || !this.d.allow.allows(bundle.manifest.target.path)) continue;
      const r = await this.applyOne(p, bundle, rule.consistency, rule.safetyTimeoutMs, rule.actor);
      if (r.outcome === Outcome.OUTCOME_DONE) this.d.metrics.followDelayMs.observe(performance.now() - execAt);
      out.push(r);
      await this.d.audit.append({
        actor: rule.actor,
        action: "auto-apply",
        request: { bundleId: rule.bundleId, selector: rule.selector, trigger: "exec" },
        processes: [{ pid, outcome: outcomeName(r.outcome), ...(r.errorCode ? { errorCode: r.errorCode } : {}) }],
        result: r.outcome === Outcome.OUTCOME_FAILED ? r.errorCode : "ok",
      });
    }
    return out;
  }

  events(signal: AbortSignal): AsyncGenerator<Event> {
    return this.d.events.stream(signal);
  }

  /** The follow rules in force (for status and tests). */
  followRules(): FollowRule[] {
    return this.follow.all();
  }
}

/** A deadline that passed mid-way: carries the per-process results for the audit log. */
export class PartialResults extends AgentError {
  constructor(
    code: "EDEADLINE",
    message: string,
    readonly results: ProcessResult[],
  ) {
    super(code, message);
  }

  get processes(): NonNullable<AuditRecord["processes"]> {
    return this.results.map((r) => ({
      pid: r.pid,
      outcome: outcomeName(r.outcome),
      ...(r.errorCode ? { errorCode: r.errorCode } : {}),
    }));
  }
}
