/**
 * What a bundle will do and whether it checks out, for `hotpatch inspect`: unlike `openBundle`,
 * a failed hash or signature is reported rather than thrown, so the operator sees everything at once.
 */
import { createHash, type KeyObject } from "node:crypto";
import { readElf } from "../native/index.js";
import { BundleError } from "./errors.js";
import { readBundleFiles } from "./files.js";
import { parseManifest } from "./manifest.js";
import { loadPublicKey, parseSignatureFile, verifyManifestSignature } from "./signature.js";
import type { BundleManifest } from "./types.js";

/** The signature's state, as a discriminated union. */
export type SignatureStatus =
  /** No manifest.sig. */
  | { state: "unsigned" }
  /** Signed, but no trusted key was given to check it. */
  | { state: "unchecked"; keyId: string }
  /** Signed and verified by the trusted key `keyId`. */
  | { state: "verified"; keyId: string }
  /** manifest.sig is malformed, from an untrusted key, or does not verify. */
  | { state: "invalid"; keyId: string | null; reason: string };

/** What `inspectBundle` found. */
export interface InspectReport {
  /** The validated manifest. */
  manifest: BundleManifest;
  /** patch.so's hash against the manifest's. */
  hash: { ok: boolean; expected: string; actual: string; size: number };
  /** The signature's state. */
  signature: SignatureStatus;
  /** The build-id check against a given ELF, when one was given. */
  target: { path: string; buildId: string | null; ok: boolean } | null;
  /** True when the hash matches, the signature is not invalid (nor missing when keys were given), and the target matches. */
  ok: boolean;
}

/** Options of `inspectBundle`. */
export interface InspectOptions {
  /** Trusted public keys (PEM text or paths); with any, an unsigned bundle is not ok. */
  trustedKeys?: string[];
  /** An ELF file whose build-id must match the bundle's target. */
  elfPath?: string;
  /** Cancels the reading. */
  signal?: AbortSignal;
}

function reason(err: unknown): string {
  if (err instanceof BundleError) return err.message;
  throw err;
}

function signatureStatus(manifest: Buffer, sigBytes: Buffer | null, trusted: KeyObject[]): SignatureStatus {
  if (!sigBytes) return { state: "unsigned" };
  let sig: ReturnType<typeof parseSignatureFile>;
  try {
    sig = parseSignatureFile(sigBytes);
  } catch (err) {
    return { state: "invalid", keyId: null, reason: reason(err) };
  }
  if (trusted.length === 0) return { state: "unchecked", keyId: sig.keyId };
  try {
    return { state: "verified", keyId: verifyManifestSignature(manifest, sig, trusted) };
  } catch (err) {
    return { state: "invalid", keyId: sig.keyId, reason: reason(err) };
  }
}

/** Reads a bundle and reports every check. Throws BundleError only when it cannot be read or its manifest is malformed. */
export async function inspectBundle(pathOrTar: string, opts: InspectOptions = {}): Promise<InspectReport> {
  const trusted: KeyObject[] = [];
  for (const key of opts.trustedKeys ?? []) trusted.push(await loadPublicKey(key));
  const files = await readBundleFiles(pathOrTar, opts.signal);
  const manifest = parseManifest(files.manifest);
  const actual = createHash("sha256").update(files.so).digest("hex");
  const hash = { ok: actual === manifest.sha256, expected: manifest.sha256, actual, size: files.so.length };

  const signature = signatureStatus(files.manifest, files.signature, trusted);
  let target: InspectReport["target"] = null;
  if (opts.elfPath) {
    let buildId: string | null;
    try {
      buildId = (await readElf(opts.elfPath)).buildId;
    } catch (err) {
      throw new BundleError(
        "EBAD_TARGET",
        `cannot read ${opts.elfPath} as ELF: ${(err as Error).message}`,
        { path: opts.elfPath },
        { cause: err },
      );
    }
    target = { path: opts.elfPath, buildId, ok: buildId === manifest.target.buildId };
  }
  const signatureOk = signature.state === "verified" || (trusted.length === 0 && signature.state !== "invalid");
  return { manifest, hash, signature, target, ok: hash.ok && signatureOk && (target?.ok ?? true) };
}
