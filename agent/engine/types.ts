/**
 * The engine as the agent uses it: exactly the native engine's operations and types
 * (native/index.ts), so that the two can never drift apart; agent/engine/native_engine.ts binds them.
 */
import type { applyPatch, listPatches, revertPatch } from "../../native/index.js";

export type { Consistency, OpOptions, OpResult, PatchRecord, PatchSpec } from "../../native/index.js";

/** The engine operations the agent needs. Errors carry a stable `.code` (ENOSYMBOL, EUNSAFE_TIMEOUT, ...). */
export interface Engine {
  /** Loads and activates a patch; `changed: false` when it is already active. */
  applyPatch: typeof applyPatch;
  /** Deactivates a patch, and unmaps it with `unload`. */
  revertPatch: typeof revertPatch;
  /** The patches present in a process, read from its memory. */
  listPatches: typeof listPatches;
}
