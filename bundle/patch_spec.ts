/** What the engine is given to apply a bundle: the one mapping from a manifest to a PatchSpec, for the agent and `hotpatch apply`. */
import type { PatchSpec } from "../native/index.js";
import type { BundleManifest } from "./types.js";

/** The engine's patch for `manifest`, its shared object at `soPath`. */
export function patchSpecOf(manifest: BundleManifest, soPath: string): PatchSpec {
  return {
    id: manifest.id,
    soPath,
    functions: manifest.functions,
    // "auto" left in a hand-written manifest: the mmap loader handles C and C++ alike.
    loader: manifest.loader === "dlopen" ? "dlopen" : "mmap",
  };
}
