/** Public face of patch bundles: build, pack, open and verify, match to a target, sign. */
export { buildBundle, parseFunctionSpec } from "./build.js";
export {
  buildBundleFromDiff,
  type DiffBuildOptions,
  type DiffBuildResult,
  type PatchedFunctionReport,
} from "./diff/index.js";
export { BundleError, type BundleErrorCode, type BundleErrorContext } from "./errors.js";
export { MANIFEST_FILE, packBundle, SIGNATURE_FILE, SO_FILE } from "./files.js";
export { type InspectOptions, type InspectReport, inspectBundle, type SignatureStatus } from "./inspect.js";
export { type WrittenKeyPair, writeKeyPair } from "./keyfiles.js";
export { parseManifest, serializeManifest, validateManifest } from "./manifest.js";
export { checkBundleTarget, openBundle } from "./open.js";
export { patchSpecOf } from "./patch_spec.js";
export {
  generateKeyPair,
  type KeyPairPem,
  keyIdOf,
  loadPrivateKey,
  loadPublicKey,
  signManifest,
} from "./signature.js";
export type {
  BuildOptions,
  BuildResult,
  Bundle,
  BundleFunction,
  BundleManifest,
  BundleSource,
  BundleTarget,
  Consistency,
  FunctionSpec,
  LoaderKind,
  OpenOptions,
  TargetKind,
  VerifiedSignature,
} from "./types.js";
