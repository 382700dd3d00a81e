/** Public face of the local commands' parts (`apply`, `revert`, `ps` on this host): selecting processes, per-process outcomes (no patch file is kept: each target gets its own memfd). */
export {
  groupByExecutable,
  mappedLibraries,
  mappedLibrary,
  pidsMappingLibrary,
  pidsOfExecutable,
} from "./processes.js";
export { type AppliedFunction, countOutcomes, type OutcomeCounts, type ProcessOutcome, runEach } from "./run_each.js";
