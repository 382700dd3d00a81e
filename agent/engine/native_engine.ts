/**
 * Binds the agent's Engine to the native addon. The engine functions arrive in native/index.ts
 * separately; until they do, this returns an engine whose patch operations fail with ENO_ENGINE
 * and whose listPatches reports nothing (no patch can be present without the engine).
 */
import * as native from "../../native/index.js";
import { AgentError } from "../errors.js";
import type { Engine } from "./types.js";

/** The native engine, or one that explains it is not built in. */
export function nativeEngine(): Engine {
  const n = native as unknown as Partial<Engine>;
  if (
    typeof n.applyPatch === "function" &&
    typeof n.revertPatch === "function" &&
    typeof n.listPatches === "function"
  ) {
    return { applyPatch: n.applyPatch, revertPatch: n.revertPatch, listPatches: n.listPatches };
  }
  const missing = (): never => {
    throw new AgentError(
      "ENO_ENGINE",
      "this hotpatch build has no patch engine (native/index.ts exports no applyPatch); rebuild with the engine",
    );
  };
  return {
    applyPatch: async () => missing(),
    revertPatch: async () => missing(),
    listPatches: async () => [],
  };
}
