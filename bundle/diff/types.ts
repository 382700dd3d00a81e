/** Pure types of building a bundle from a source diff. */
import type { BuildResult, Consistency, LoaderKind } from "../types.js";

/** Options of `buildBundleFromDiff` (`hotpatch build --source-dir DIR --diff FIX.diff`). */
export interface DiffBuildOptions {
  /** The running binary (executable or shared library) that `sourceDir` built. */
  target: string;
  /** The source tree the target was built from (read only; the build runs on copies). */
  sourceDir: string;
  /** The fix, as a unified diff against `sourceDir`. */
  diff: string;
  /** The command that built the target, run in `sourceDir` (default `make`). */
  buildCommand?: string;
  /** Patch id; defaults to the diff's file name plus a short hash of patch.so. */
  id?: string;
  /** Only `mmap` (or `auto`) loads a patch linked from a diff. */
  loader?: LoaderKind;
  /** Consistency written for every function. */
  consistency?: Consistency;
  /** Private key (PEM text or path) to sign the manifest with. */
  signKey?: string;
  /** Output: a directory that must not exist (or be empty), or with `tar` a .tar file. */
  out: string;
  tar?: boolean;
  /** Longest the build command, or one compile, may run, in ms (default 300000). */
  compileTimeoutMs?: number;
  signal?: AbortSignal;
}

/** One function of the patch and why it is there. */
export interface PatchedFunctionReport {
  /** The translation unit (source path relative to the tree). */
  unit: string;
  /** The function in the patched build. */
  function: string;
  reason: "edited" | "inlined" | "new" | "clone" | "cold-part";
  /** The reason in words. */
  why: string;
  /** The target symbol it replaces, or null for patch code that is only called (new, cold parts). */
  replaces: string | null;
}

/** What `buildBundleFromDiff` made. */
export interface DiffBuildResult extends BuildResult {
  /** The translation units compiled twice. */
  units: string[];
  functions: PatchedFunctionReport[];
  /** Functions that changed only through `__LINE__` values (`file.c:name`), not patched. */
  lineOnly: string[];
  /** How many functions of the rebuilt original were proven equal to the target's. */
  provenFunctions: number;
  /**
   * Where the time went: the build (tree copy, the wrapped build command, the two compiles of each
   * touched unit), the comparison with the proof against the target, the link of patch.so, and
   * the checks and writing of the bundle.
   */
  timings: { buildMs: number; compareMs: number; linkMs: number; writeMs: number };
}
