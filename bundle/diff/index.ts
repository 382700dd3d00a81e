/** Public face of building a patch bundle from a source diff and the program's own build. */
export { buildBundleFromDiff } from "./build_from_diff.js";
export type { DiffBuildOptions, DiffBuildResult, PatchedFunctionReport } from "./types.js";
export { parseUnifiedDiff } from "./unified_diff.js";
