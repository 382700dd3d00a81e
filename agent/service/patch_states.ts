/** Conversions between the engine's patch records and the schema's patch states. */
import { PatchState, type ProcessPatch } from "../../proto/index.js";
import type { PatchRecord } from "../engine/types.js";

const states: Record<PatchRecord["state"], PatchState> = {
  loaded: PatchState.PATCH_STATE_LOADED,
  active: PatchState.PATCH_STATE_ACTIVE,
  inactive: PatchState.PATCH_STATE_INACTIVE,
};

/** A process's patch records as schema ProcessPatch entries. */
export function toProcessPatches(pid: number, records: PatchRecord[]): ProcessPatch[] {
  return records.map((r) => ({ pid, patchId: r.id, state: states[r.state] }));
}
