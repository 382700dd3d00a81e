/**
 * The engine as the agent uses it: exactly the native engine's operations and types
 * (native/index.ts), so that the two can never drift apart; agent/engine/native_engine.ts binds them.
 */
import type { applyPatch, applyPatchToMany, listPatches, revertPatch } from "../../native/index.js";

export type { ApplyOutcome, Consistency, OpOptions, OpResult, PatchRecord, PatchSpec } from "../../native/index.js";

/** The engine operations the agent needs. Errors carry a stable `.code` (ENOSYMBOL, EUNSAFE_TIMEOUT, ...). */
export interface Engine {
  /** Loads and activates a patch; `changed: false` when it is already active. */
  applyPatch: typeof applyPatch;
  /**
   * Loads and activates a patch in many processes in one native batch (engine threads of its own,
   * one parse of the program, its libraries and the patch); never rejects for one process.
   */
  applyPatchToMany: typeof applyPatchToMany;
  /** Deactivates a patch, and unmaps it with `unload`. */
  revertPatch: typeof revertPatch;
  /** The patches present in a process, read from its memory. */
  listPatches: typeof listPatches;
}
