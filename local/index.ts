/** Public face of the local commands' parts (`apply`, `revert`, `ps` on this host): selecting processes, per-process outcomes, kept patch files. */
export { defaultPatchDir, keepPatchFile } from "./patch_store.js";
export { groupByExecutable, mappedLibrary, pidsMappingLibrary, pidsOfExecutable } from "./processes.js";
export { type AppliedFunction, countOutcomes, type OutcomeCounts, type ProcessOutcome, runEach } from "./run_each.js";
