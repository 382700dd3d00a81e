/** What a bundle's manifest tells the agent. */
export interface BundleManifest {
  /** Bundle (patch) id. */
  id: string;
  /** What it patches. */
  target: {
    /** Absolute path of the executable or library. */
    path: string;
    /** Its GNU build-id; processes whose file has another build-id are refused. */
    buildId?: string;
  };
  /** Functions replaced. */
  functions: { symbol: string; replacement: string }[];
  /** File name of the patch .so inside the bundle. */
  so: string;
  /** sha256 of the patch .so, hex. */
  soSha256: string;
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
