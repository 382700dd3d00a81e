/** Binds the agent's Engine to the native engine exported by native/index.ts. */
import { applyPatch, applyPatchToMany, listPatches, revertPatch } from "../../native/index.js";
import type { Engine } from "./types.js";

/** The native engine (ptrace, in-process). */
export function nativeEngine(): Engine {
  return { applyPatch, applyPatchToMany, revertPatch, listPatches };
}
