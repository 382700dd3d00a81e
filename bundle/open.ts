/** Opening a bundle: read, authenticate, hash-check, copy to a private directory; and matching it to a target. */
import { createHash, type KeyObject } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EngineError, readElf } from "../native/index.js";
import { BundleError, throwIfAborted } from "./errors.js";
import { readBundleFiles, SO_FILE, writeBundleFiles } from "./files.js";
import { parseManifest } from "./manifest.js";
import { loadPublicKey, parseSignatureFile, verifyManifestSignature } from "./signature.js";
import type { Bundle, BundleManifest, OpenOptions } from "./types.js";

const X86_64 = 62;

/**
 * Opens a bundle directory or .tar. With trusted keys, the signature is checked over the raw
 * manifest bytes before the manifest is even parsed; then the manifest is validated, patch.so is
 * hashed, and verified copies land in a private directory (`dir`) so later swaps of the originals
 * cannot reach a target. Throws only BundleError.
 */
export async function openBundle(pathOrTar: string, opts: OpenOptions = {}): Promise<Bundle> {
  const { signal } = opts;
  const trusted: KeyObject[] = [];
  for (const key of opts.trustedKeys ?? []) trusted.push(await loadPublicKey(key));
  const files = await readBundleFiles(pathOrTar, signal);
  const requireSignature = opts.requireSignature === true || trusted.length > 0;

  const sig = files.signature ? parseSignatureFile(files.signature) : null;
  if (!sig && requireSignature) {
    throw new BundleError(
      "EBUNDLE_UNSIGNED",
      `${pathOrTar} is not signed (no manifest.sig) and a signature is required; sign it with hotpatch build --sign KEY`,
      { path: pathOrTar },
    );
  }
  let verifiedBy: string | null = null;
  if (sig && requireSignature) verifiedBy = verifyManifestSignature(files.manifest, sig, trusted);

  const manifest = parseManifest(files.manifest);
  const digest = createHash("sha256").update(files.so).digest("hex");
  if (digest !== manifest.sha256) {
    throw new BundleError(
      "EBUNDLE_HASH",
      `${pathOrTar}: patch.so has sha256 ${digest} but the manifest says ${manifest.sha256} (changed or truncated)`,
      { path: pathOrTar, expected: manifest.sha256, actual: digest },
    );
  }
  throwIfAborted(signal);

  const dir = await mkdtemp(path.join(os.tmpdir(), `hotpatch-bundle-${manifest.id}-`));
  let disposed = false;
  const dispose = async () => {
    if (disposed) return;
    disposed = true;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // The target process opens patch.so itself (mmap loader) and may run as another user.
    await chmod(dir, 0o755);
    await writeBundleFiles(dir, files);
    const soPath = path.join(dir, SO_FILE);
    await checkPatchObject(soPath, manifest, pathOrTar);
    throwIfAborted(signal);
    return {
      dir,
      origin: pathOrTar,
      manifest,
      manifestBytes: files.manifest,
      soPath,
      signature: verifiedBy ? { keyId: verifiedBy } : null,
      signedBy: sig?.keyId ?? null,
      dispose,
    };
  } catch (err) {
    await dispose();
    if (err instanceof BundleError) throw err;
    throw new BundleError(
      "EIO",
      `cannot copy ${pathOrTar} to ${dir}: ${(err as Error).message}`,
      { path: pathOrTar },
      { cause: err },
    );
  }
}

/** patch.so must be an x86-64 shared object that exports every replacement as a function. */
async function checkPatchObject(soPath: string, manifest: BundleManifest, origin: string): Promise<void> {
  let elf: Awaited<ReturnType<typeof readElf>>;
  try {
    elf = await readElf(soPath);
  } catch (err) {
    const why = err instanceof EngineError ? err.message : String(err);
    throw new BundleError(
      "EBAD_BUNDLE",
      `${origin}: patch.so is not a valid ELF file (${why})`,
      { path: origin, field: SO_FILE },
      { cause: err },
    );
  }
  if (elf.type !== "shared" || elf.machine !== X86_64 || elf.bits !== 64) {
    throw new BundleError("EBAD_BUNDLE", `${origin}: patch.so must be an x86-64 ELF shared object`, {
      path: origin,
      field: SO_FILE,
    });
  }
  for (const [i, fn] of manifest.functions.entries()) {
    const sym = elf.symbols.find((s) => s.table === "dynsym" && s.defined && s.name === fn.replacement);
    if (sym?.kind !== "function") {
      throw new BundleError(
        "EBAD_BUNDLE",
        `${origin}: functions[${i}].replacement: patch.so exports no function ${fn.replacement}`,
        { path: origin, field: `functions[${i}].replacement`, symbol: fn.replacement },
      );
    }
  }
}

/**
 * Resolves when the ELF file at `elfPath` has the build-id the bundle was made for; EBUILDID otherwise
 * (also when the file has no build-id). EBAD_TARGET when the file cannot be read as ELF.
 */
export async function checkBundleTarget(bundle: Pick<Bundle, "manifest">, elfPath: string): Promise<void> {
  let buildId: string | null;
  try {
    buildId = (await readElf(elfPath)).buildId;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new BundleError("EBAD_TARGET", `cannot read ${elfPath} as ELF: ${why}`, { path: elfPath }, { cause: err });
  }
  const expected = bundle.manifest.target.buildId;
  if (buildId !== expected) {
    throw new BundleError(
      "EBUILDID",
      `${elfPath} has build-id ${buildId ?? "(none)"} but bundle ${bundle.manifest.id} is for build-id ${expected}: it was built against a different binary`,
      { path: elfPath, expected, ...(buildId ? { actual: buildId } : {}) },
    );
  }
}
