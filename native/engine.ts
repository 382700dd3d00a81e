/**
 * The patch engine's TypeScript face: load, activate, deactivate and unload patches in a running
 * process, and read what a process carries. Each call is one native transaction on a worker thread
 * (stop every thread, do the batch, resume); nothing here blocks the event loop.
 */
import { addon, type RawOpOptions as RawOptions } from "./binding.js";
import type { ApplyOutcome, Consistency, OpOptions, OpResult, PatchRecord, PatchSpec } from "./engine_types.js";
import { EngineError } from "./errors.js";

/** Turns an AbortSignal into the shared flag the native worker polls between safety retries. */
function toRaw(opts: OpOptions, pid: number): { raw: RawOptions; done: () => void } {
  if (opts.signal?.aborted) throw new EngineError("ECANCELLED", "cancelled before it started", { pid });
  const raw: RawOptions = {};
  if (opts.safetyTimeoutMs !== undefined) raw.safetyTimeoutMs = opts.safetyTimeoutMs;
  if (opts.debugDirs !== undefined) raw.debugDirs = opts.debugDirs;
  if (opts.placement !== undefined) raw.placement = opts.placement;
  const signal = opts.signal;
  if (!signal) return { raw, done: () => {} };
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const onAbort = () => Atomics.store(cancel, 0, 1);
  signal.addEventListener("abort", onAbort, { once: true });
  raw.cancel = cancel;
  return { raw, done: () => signal.removeEventListener("abort", onAbort) };
}

async function call<T>(pid: number, opts: OpOptions, run: (raw: RawOptions) => Promise<T>): Promise<T> {
  const { raw, done } = toRaw(opts, pid);
  try {
    return await run(raw);
  } catch (err) {
    throw EngineError.from(err, { pid });
  } finally {
    done();
  }
}

function withChanged(pid: number, r: Omit<OpResult, "pid" | "changed">): OpResult {
  return { pid, ...r, changed: r.attempts > 0 };
}

/** Maps the patch into the process and applies its relocations; state `loaded`. Nothing calls it yet. */
export async function loadPatch(pid: number, spec: PatchSpec, opts: OpOptions = {}): Promise<OpResult> {
  const r = await call(pid, opts, (raw) => addon.loadPatch(pid, withDefaults(spec, opts), raw));
  return withChanged(pid, r);
}

/** Writes the jumps once the safety check passes; `loaded|inactive → active`. No-op when active. */
export async function activatePatch(pid: number, id: string, opts: OpOptions = {}): Promise<OpResult> {
  return withChanged(pid, await call(pid, opts, (raw) => addon.activatePatch(pid, id, raw)));
}

/** Restores the original entry bytes; `active → inactive`. No-op unless active. */
export async function deactivatePatch(pid: number, id: string, opts: OpOptions = {}): Promise<OpResult> {
  return withChanged(pid, await call(pid, opts, (raw) => addon.deactivatePatch(pid, id, raw)));
}

/** Unmaps the patch once no thread is in or returning into its code; it must not be active. */
export async function unloadPatch(pid: number, id: string, opts: OpOptions = {}): Promise<OpResult> {
  return withChanged(pid, await call(pid, opts, (raw) => addon.unloadPatch(pid, id, raw)));
}

/** The patches a process carries, read from the process itself (no stop). */
export async function listPatches(pid: number): Promise<PatchRecord[]> {
  return call(pid, {}, () => addon.listPatches(pid));
}

function withDefaults(spec: PatchSpec, opts: OpOptions): PatchSpec {
  return {
    ...spec,
    functions: spec.functions.map((f) => ({ ...f, consistency: f.consistency ?? opts.consistency ?? "strict" })),
  };
}

/**
 * Loads (unless present) and activates a patch in many processes at once, `parallel` at a time
 * (default 4) on native threads that share one parse of the program, its libraries and the patch.
 * Never rejects for a single process: each gets its outcome.
 */
export async function applyPatchToMany(
  pids: number[],
  spec: PatchSpec,
  opts: OpOptions & { parallel?: number } = {},
): Promise<ApplyOutcome[]> {
  if (pids.length === 0) return [];
  return call(pids[0] as number, opts, (raw) =>
    addon.applyBatch(
      pids,
      withDefaults(spec, opts),
      opts.parallel !== undefined ? { ...raw, parallel: opts.parallel } : raw,
    ),
  );
}

/**
 * Loads (unless present) and activates a patch. Idempotent: an active patch gives `changed: false`.
 * When activation fails, a patch this call loaded is unloaded again, so the process is left as it was.
 */
export async function applyPatch(pid: number, spec: PatchSpec, opts: OpOptions = {}): Promise<OpResult> {
  const [r] = await applyPatchToMany([pid], spec, { ...opts, parallel: 1 });
  if (r === undefined || r.outcome === "failed") {
    throw EngineError.from(r ?? new Error("no result"), { pid });
  }
  return { pid, patch: r.patch, pauseUs: r.pauseUs, attempts: r.attempts, changed: r.outcome === "done" };
}

/** Deactivates a patch and, with `unload`, unmaps it. Idempotent for an inactive patch. */
export async function revertPatch(
  pid: number,
  id: string,
  opts: OpOptions & { unload?: boolean } = {},
): Promise<OpResult> {
  const off = await deactivatePatch(pid, id, opts);
  if (!opts.unload) return off;
  const gone = await unloadPatch(pid, id, opts).catch((err: unknown) => {
    // Gone after the deactivation: it exited during the operation, not before it.
    if (err instanceof EngineError && (err.code === "ENOPROCESS" || err.code === "EZOMBIE")) {
      throw new EngineError(
        "ETARGET_EXITED",
        `process ${pid} exited during the operation: ${err.message}`,
        err.context,
        {
          cause: err,
        },
      );
    }
    throw err;
  });
  return {
    ...gone,
    pauseUs: Math.max(off.pauseUs, gone.pauseUs),
    attempts: off.attempts + gone.attempts,
    changed: true,
  };
}

/** Stops every thread of the process and resumes it at once; returns the pause in µs (the floor). */
export async function measureStopFloor(pid: number): Promise<number> {
  return call(pid, {}, () => addon.stopResume(pid));
}

export type { Consistency };
