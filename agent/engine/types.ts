/**
 * The shape of the native engine as the agent uses it. It mirrors the functions native/index.ts
 * exports (applyPatch, revertPatch, listPatches); agent/engine/native_engine.ts binds them.
 */

/** How strictly the engine checks that no thread is inside a replaced function. */
export type Consistency = "strict" | "entry";

/** What to load and which functions it replaces. */
export interface PatchSpec {
  /** Patch id (the bundle id). */
  id: string;
  /** Patch shared object on this host. */
  soPath: string;
  /** Functions replaced: old symbol in the target, replacement symbol in the patch. */
  functions: { symbol: string; replacement: string; consistency?: Consistency }[];
  /** `mmap` (default): the engine maps the patch itself; `dlopen`: the target's own loader does. */
  loader?: "mmap" | "dlopen";
}

/** Options of one engine operation. */
export interface OpOptions {
  /** Safety check level (default strict). */
  consistency?: Consistency;
  /** Deadline of the safety check, milliseconds. */
  safetyTimeoutMs?: number;
  /** Cancels the operation (it leaves the target as it was). */
  signal?: AbortSignal;
  /** Where separate debug info is searched. */
  debugDirs?: string[];
}

/** One patch as it stands in a target, read from the target's memory. */
export interface PatchRecord {
  /** Patch id. */
  id: string;
  /** Life-cycle state inside the process. */
  state: "loaded" | "active" | "inactive";
  /** Patch shared object. */
  soPath: string;
  /** Where the patch is mapped. */
  base: bigint;
  /** Each redirected function. */
  functions: { symbol: string; address: bigint; replacement: bigint; jump: "rel32" | "abs64" }[];
}

/** What one operation did in one process. */
export interface OpResult {
  /** Target process. */
  pid: number;
  /** The patch after the operation. */
  patch: PatchRecord;
  /** Time the target was stopped, microseconds (0 when nothing had to be done). */
  pauseUs: number;
  /** Stops it took (safety-check retries). */
  attempts: number;
  /** False when the process was already in the asked state (nothing was done). */
  changed: boolean;
}

/** The engine operations the agent needs. Errors carry a stable `.code` (ENOSYMBOL, EUNSAFE_TIMEOUT, ETARGET_EXITED, ...). */
export interface Engine {
  /** Loads and activates a patch; a no-op result (pauseUs 0) when it is already active. */
  applyPatch(pid: number, spec: PatchSpec, opts?: OpOptions): Promise<OpResult>;
  /** Deactivates a patch, and unmaps it with `unload`. */
  revertPatch(pid: number, id: string, opts?: OpOptions & { unload?: boolean }): Promise<OpResult>;
  /** The patches present in a process, read from its memory. */
  listPatches(pid: number): Promise<PatchRecord[]>;
}
