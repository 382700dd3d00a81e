/**
 * The one place a staged upload is verified before it is stored: the archive's sha256 must equal
 * the header's, then bundle/'s openBundle reads the tar, validates every manifest field, checks
 * patch.so's hash and exports and, when the agent trusts keys, the signature. The verified files
 * are copied into `dir`, which the store then renames into place.
 */
import { cp } from "node:fs/promises";
import path from "node:path";
import { BundleError, openBundle, SO_FILE } from "../../bundle/index.js";
import { diskError, isFileError } from "../disk_error.js";
import { AgentError } from "../errors.js";
import { treeBytes } from "./disk_usage.js";
import type { VerifiedBundle } from "./types.js";

function bad(bundleId: string, message: string, cause?: unknown): AgentError {
  return new AgentError(
    "EBAD_BUNDLE",
    `bundle ${bundleId}: ${message}`,
    { bundleId },
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Verifies an uploaded archive (`archive`, already hashed while it arrived as `sha256`) against the
 * header and the trusted keys (a signature is required when any are given), and copies the verified
 * files into `dir`. `beforeCopy` learns how many bytes the copy will take (it may refuse by throwing).
 */
export async function verifyBundle(
  bundleId: string,
  archive: string,
  sha256: string,
  expectedSha256: string,
  dir: string,
  trustedKeys: string[],
  signal?: AbortSignal,
  beforeCopy: (bytes: number) => Promise<void> = async () => undefined,
): Promise<VerifiedBundle> {
  if (sha256 !== expectedSha256) {
    throw bad(
      bundleId,
      `sha256 of the upload is ${sha256} but the header announced ${expectedSha256}; the upload is corrupt or not this bundle`,
    );
  }
  let opened: Awaited<ReturnType<typeof openBundle>>;
  try {
    opened = await openBundle(archive, { trustedKeys, ...(signal ? { signal } : {}) });
  } catch (err) {
    if (!(err instanceof BundleError)) throw err;
    // Our own disk (the upload, the private copy in the temp folder) failed: not the bundle's fault.
    if (err.code === "EIO" && isFileError(err.cause))
      throw diskError(err.cause, `open the upload of bundle ${bundleId}`);
    const message = `[${err.code}] ${err.message.replaceAll(archive, "the upload")}`;
    if (err.code === "EBUNDLE_UNSIGNED" || err.code === "EBUNDLE_SIGNATURE") {
      throw new AgentError("ENOT_TRUSTED", `bundle ${bundleId}: ${message}`, { bundleId }, { cause: err });
    }
    throw bad(bundleId, message, err);
  }
  try {
    if (opened.manifest.id !== bundleId) {
      throw bad(bundleId, `the manifest's id is "${opened.manifest.id}", not the id the upload announced`);
    }
    await beforeCopy(await treeBytes(opened.dir));
    await cp(opened.dir, dir, { recursive: true }).catch((err: unknown) => {
      throw diskError(err, `store bundle ${bundleId}`);
    });
    return { id: bundleId, sha256, manifest: opened.manifest, soPath: path.join(dir, SO_FILE) };
  } finally {
    await opened.dispose();
  }
}
