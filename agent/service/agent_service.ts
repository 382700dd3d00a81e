/**
 * What the agent does, independent of gRPC: every method takes plain requests and a call context
 * (who asks, a signal that fires at the deadline or on cancel) and throws AgentError with a stable code.
 */
import { hostname } from "node:os";
import { patchSpecOf } from "../../bundle/index.js";
import { codeOf } from "../../common/index.js";
import { readTargetObjects } from "../../native/index.js";
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

/** Per-process results as the audit log records them. */
function auditProcesses(results: ProcessResult[]): NonNullable<AuditRecord["processes"]> {
  return results.map((r) => ({
    pid: r.pid,
    outcome: outcomeName(r.outcome),
    ...(r.errorCode ? { errorCode: r.errorCode } : {}),
  }));
}

/** A process left alone by a request, and why. */
function skippedResult(pid: number, errorCode: string, message: string): ProcessResult {
  return { pid, outcome: Outcome.OUTCOME_SKIPPED, errorCode, message, pauseUs: 0 };
}

/** A process a request did not reach before its deadline. */
const NOT_REACHED = "the request's deadline passed before this process was reached";

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

  /** The processes a change request is about; a request for one pid that matches nothing is ENOT_FOUND. */
  private async selectTargets(sel: Selector, ctx: CallContext): Promise<ProcessFacts[]> {
    const procs = await selectProcesses(sel, this.d.ids, ctx.signal);
    if (sel.pid && procs.length === 0) {
      throw new AgentError(
        "ENOT_FOUND",
        `no process ${sel.pid} matches the selector (it does not exist, is the agent itself, or another selector field rules it out)`,
        { pid: sel.pid },
      );
    }
    return procs;
  }

  /** At staging: a bundle that names its target path must name one this agent may patch. */
  private checkStageAllowed(bundle: VerifiedBundle): void {
    const file = bundle.manifest.target.path;
    if (file && !this.d.allow.allows(file)) {
      throw new AgentError(
        "ENOT_ALLOWED",
        `bundle ${bundle.id} is for ${file}, which is not on this agent's allow-list (config: allow)`,
        {
          bundleId: bundle.id,
          path: file,
        },
      );
    }
  }

  /**
   * The file in process `p` that `bundle` patches (the executable, or a mapped library) found by
   * build-id, or why the process is not a target of this bundle.
   */
  private async targetFile(
    p: ProcessFacts,
    bundle: VerifiedBundle,
  ): Promise<{ file: string } | { code: string; message: string }> {
    const t = bundle.manifest.target;
    if (t.kind === "executable") {
      const id = await this.d.ids.forProcess(p.pid);
      if (id === t.buildId) return { file: p.exePath };
      return {
        code: "EBUILDID",
        message: `process ${p.pid} runs ${p.exePath} with build-id ${id ?? "(none)"}; bundle ${bundle.id} is for build-id ${t.buildId}`,
      };
    }
    // The libraries as mapped: after a package upgrade a process may still map an older build
    // than the file now at the same path.
    const objects = (await readTargetObjects(p.pid).catch(() => null))?.objects ?? [];
    const lib = objects.find((o) => !o.executable && o.buildId === t.buildId);
    if (lib) return { file: lib.path };
    const named = t.path ? objects.find((o) => o.path === t.path) : undefined;
    return {
      code: "EBUILDID",
      message: `process ${p.pid} maps no library with build-id ${t.buildId} (bundle ${bundle.id})${
        named ? `: it maps ${named.path} with build-id ${named.buildId ?? "(none)"}` : ""
      }`,
    };
  }

  /** Splits matched processes into targets, skipped ones (not this bundle's target) and a refusal when a target file is not allow-listed. */
  private async partition(
    procs: ProcessFacts[],
    bundle: VerifiedBundle,
    op: string,
  ): Promise<{ targets: ProcessFacts[]; skipped: ProcessResult[] }> {
    const found = await mapLimit(procs, parallelism, async (p) => ({ p, t: await this.targetFile(p, bundle) }));
    const denied = found.flatMap(({ p, t }) =>
      "file" in t && !this.d.allow.allows(t.file) ? [`${p.pid} (${t.file})`] : [],
    );
    if (denied.length > 0) {
      throw new AgentError(
        "ENOT_ALLOWED",
        `not on this agent's allow-list (config: allow), nothing was changed: ${denied.join(", ")}; narrow the selector or extend the allow-list`,
        { bundleId: bundle.id },
      );
    }
    const skipped = found.flatMap(({ p, t }) => {
      if ("file" in t) return [];
      this.d.metrics.patchOps.inc({ op, outcome: "skipped" });
      return [skippedResult(p.pid, t.code, t.message)];
    });
    return { targets: found.filter(({ t }) => "file" in t).map(({ p }) => p), skipped };
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
      const { bundle, alreadyStaged } = await this.d.store.stage(h, chunks, ctx.signal, (b) =>
        this.checkStageAllowed(b),
      );
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
      if (signal?.aborted) return result(Outcome.OUTCOME_SKIPPED, "EDEADLINE", NOT_REACHED);
      const present = await this.readPatches(p.pid);
      if (present.some((r) => r.id === bundle.id && r.state === "active")) {
        this.states.set(p.pid, toProcessPatches(p.pid, present));
        return result(Outcome.OUTCOME_ALREADY, "", `${bundle.id} is already active in ${p.pid}`);
      }
      try {
        const r = await this.d.engine.applyPatch(p.pid, patchSpecOf(bundle.manifest, bundle.soPath), {
          consistency,
          safetyTimeoutMs,
          debugDirs: this.d.config.debugDirs,
          ...(signal ? { signal } : {}),
        });
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
        const consistency = consistencyOf(req.consistency);
        const safetyTimeoutMs = req.safetyTimeoutMs || this.d.config.safetyTimeoutMs;
        const { targets, skipped } = await this.partition(await this.selectTargets(sel, ctx), bundle, "apply");
        if (req.followNewProcesses) {
          await this.follow.set({ bundleId: bundle.id, selector: sel, consistency, safetyTimeoutMs, actor: ctx.actor });
        }
        const done = await mapLimit(targets, parallelism, (p) =>
          this.applyOne(p, bundle, consistency, safetyTimeoutMs, ctx.actor, ctx.signal),
        );
        const results = [...done, ...skipped].sort((a, b) => a.pid - b.pid);
        if (ctx.signal.aborted)
          throw new PartialResults(
            "EDEADLINE",
            `the deadline passed after ${results.filter((r) => r.outcome !== Outcome.OUTCOME_SKIPPED).length} of ${results.length} processes; the audit log has each result`,
            results,
          );
        return results;
      },
      auditProcesses,
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
        await this.follow.remove(bundle.id);
        const { targets, skipped } = await this.partition(await this.selectTargets(sel, ctx), bundle, "revert");
        const done = await mapLimit(targets, parallelism, (p) => this.revertOne(p, bundle.id, req.unload, ctx));
        return [...done, ...skipped].sort((a, b) => a.pid - b.pid);
      },
      auditProcesses,
    );
  }

  /** Reverts patch `bundleId` in one process (serialised per process); never throws. */
  private revertOne(p: ProcessFacts, bundleId: string, unload: boolean, ctx: CallContext): Promise<ProcessResult> {
    return this.locks.run(p.pid, async () => {
      const result = (outcome: Outcome, errorCode = "", message = "", pauseUs = 0): ProcessResult => {
        this.d.metrics.patchOps.inc({ op: "revert", outcome: outcomeName(outcome) });
        return { pid: p.pid, outcome, errorCode, message, pauseUs };
      };
      if (ctx.signal.aborted) return result(Outcome.OUTCOME_SKIPPED, "EDEADLINE", NOT_REACHED);
      const present = (await this.readPatches(p.pid)).find((r) => r.id === bundleId);
      if (!present)
        return result(Outcome.OUTCOME_SKIPPED, "ENOT_FOUND", `${bundleId} is not present in process ${p.pid}`);
      if (present.state !== "active" && !unload)
        return result(Outcome.OUTCOME_ALREADY, "", `${bundleId} is already ${present.state} in ${p.pid}`);
      try {
        const r = await this.d.engine.revertPatch(p.pid, bundleId, {
          unload,
          debugDirs: this.d.config.debugDirs,
          signal: ctx.signal,
        });
        this.d.metrics.pauseUs.observe({ op: "revert" }, r.pauseUs);
        this.states.set(p.pid, toProcessPatches(p.pid, await this.readPatches(p.pid)));
        this.d.events.emit({
          kind: "patch.reverted",
          patchId: bundleId,
          pid: p.pid,
          state: unload ? PatchState.PATCH_STATE_UNLOADED : PatchState.PATCH_STATE_INACTIVE,
          actor: ctx.actor,
        });
        return result(Outcome.OUTCOME_DONE, "", "", r.pauseUs);
      } catch (err) {
        this.d.metrics.failures.inc({ op: "revert", code: codeOf(err) });
        return result(Outcome.OUTCOME_FAILED, codeOf(err), (err as Error).message);
      }
    });
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
        if (!name) throw new AgentError("EBAD_ARGUMENT", "target_role must be ROLE_ACTIVE or ROLE_STANDBY");
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
      if (!bundle) continue;
      const target = await this.targetFile(p, bundle);
      let r: ProcessResult;
      if (!("file" in target)) r = skippedResult(pid, target.code, target.message);
      else if (!this.d.allow.allows(target.file))
        r = skippedResult(pid, "ENOT_ALLOWED", `${target.file} is not on the allow-list`);
      else {
        r = await this.applyOne(p, bundle, rule.consistency, rule.safetyTimeoutMs, rule.actor);
        if (r.outcome === Outcome.OUTCOME_DONE) this.d.metrics.followDelayMs.observe(performance.now() - execAt);
      }
      out.push(r);
      await this.d.audit.append({
        actor: rule.actor,
        action: "auto-apply",
        request: { bundleId: rule.bundleId, selector: rule.selector, trigger: "exec" },
        processes: auditProcesses([r]),
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
    return auditProcesses(this.results);
  }
}
