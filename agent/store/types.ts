/** What the bundle store keeps about a bundle. */
import type { BundleManifest } from "../../bundle/index.js";

export type { BundleManifest };

/** A bundle that passed verification and is stored on the host. */
export interface VerifiedBundle {
  /** Bundle id. */
  id: string;
  /** sha256 of the uploaded archive. */
  sha256: string;
  /** Its manifest (bundle/'s schema 1, validated by openBundle). */
  manifest: BundleManifest;
  /** Path of the stored patch.so. */
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
