/**
 * What a bundle's manifest tells the agent. The fields follow bundle/'s manifest schema 1
 * (bundle/types.ts BundleManifest) so that bundles built by `hotpatch build` stage unchanged.
 */
export interface BundleManifest {
  /** Manifest schema version (1). */
  schema: 1;
  /** Bundle (patch) id. */
  id: string;
  /** What it patches. Build-ids decide; the path is informational (and checked against the allow-list when given). */
  target: {
    /** Path of the target when the bundle was built. */
    path?: string;
    /** GNU build-id of the target file, lowercase hex. */
    buildId: string;
    /** An executable or a shared library. */
    kind: "executable" | "library";
  };
  /** Functions replaced. */
  functions: { symbol: string; replacement: string; consistency?: "strict" | "entry" }[];
  /** sha256 of patch.so, lowercase hex. */
  sha256: string;
}

/** A bundle that passed verification and is stored on the host. */
export interface VerifiedBundle {
  /** Bundle id. */
  id: string;
  /** sha256 of the uploaded archive. */
  sha256: string;
  /** Its manifest. */
  manifest: BundleManifest;
  /** Path of the unpacked patch .so. */
  soPath: string;
}

/** Header of an upload, as the client announced it. */
export interface UploadHeader {
  /** Bundle id. */
  bundleId: string;
  /** Archive size, bytes. */
  size: number;
  /** sha256 of the archive, lowercase hex. */
  sha256: string;
}
