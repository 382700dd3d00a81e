/**
 * The one place a staged upload is verified before it is stored. Today: the archive's sha256 must
 * equal the header's, and the archive must be a tar holding manifest.json and the patch .so whose
 * sha256 the manifest names. When bundle/index.ts lands, replace the body with its openBundle
 * (which also checks the signature and the manifest schema) and keep this signature.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { extract } from "tar";
import { AgentError } from "../errors.js";
import type { BundleManifest, VerifiedBundle } from "./types.js";

function bad(bundleId: string, message: string, cause?: unknown): AgentError {
  return new AgentError(
    "EBAD_BUNDLE",
    `bundle ${bundleId}: ${message}`,
    { bundleId },
    cause === undefined ? undefined : { cause },
  );
}

function readManifest(bundleId: string, text: string): BundleManifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw bad(bundleId, "manifest.json is not JSON", err);
  }
  const o = m as Record<string, unknown>;
  const target = o.target as Record<string, unknown> | undefined;
  const fns = o.functions;
  if (o.id !== bundleId) throw bad(bundleId, `manifest id ${JSON.stringify(o.id)} differs from the announced id`);
  if (!target || typeof target.path !== "string" || !path.isAbsolute(target.path)) {
    throw bad(bundleId, "manifest target.path must be the absolute path of the executable or library it patches");
  }
  if (target.buildId !== undefined && (typeof target.buildId !== "string" || !/^[0-9a-f]+$/.test(target.buildId))) {
    throw bad(bundleId, "manifest target.buildId must be lowercase hex");
  }
  if (
    !Array.isArray(fns) ||
    fns.length === 0 ||
    !fns.every((f) => typeof f?.symbol === "string" && f.symbol && typeof f?.replacement === "string" && f.replacement)
  ) {
    throw bad(bundleId, "manifest functions must be a non-empty list of {symbol, replacement}");
  }
  const so = typeof o.so === "string" ? o.so : "patch.so";
  if (so.includes("/") || so.startsWith(".")) throw bad(bundleId, `manifest so must be a plain file name, got "${so}"`);
  if (typeof o.soSha256 !== "string" || !/^[0-9a-f]{64}$/.test(o.soSha256)) {
    throw bad(bundleId, "manifest soSha256 must be the sha256 (hex) of the patch .so");
  }
  const manifest: BundleManifest = {
    id: bundleId,
    target: { path: target.path },
    functions: fns.map((f: { symbol: string; replacement: string }) => ({
      symbol: f.symbol,
      replacement: f.replacement,
    })),
    so,
    soSha256: o.soSha256,
  };
  if (typeof target.buildId === "string") manifest.target.buildId = target.buildId;
  return manifest;
}

/**
 * Verifies an uploaded archive (`archive`, already hashed while it arrived as `sha256`) against
 * the header, unpacks it into `dir`, and returns what the agent needs to apply it.
 */
export async function verifyBundle(
  bundleId: string,
  archive: string,
  sha256: string,
  expectedSha256: string,
  dir: string,
): Promise<VerifiedBundle> {
  if (sha256 !== expectedSha256) {
    throw bad(
      bundleId,
      `sha256 of the upload is ${sha256} but the header announced ${expectedSha256}; the upload is corrupt or not this bundle`,
    );
  }
  try {
    await extract({ file: archive, cwd: dir, strict: true, filter: (p) => !p.includes("..") });
  } catch (err) {
    throw bad(bundleId, `not a readable tar archive: ${(err as Error).message}`, err);
  }
  let manifestText: string;
  try {
    manifestText = await readFile(path.join(dir, "manifest.json"), "utf8");
  } catch (err) {
    throw bad(bundleId, "the archive holds no manifest.json", err);
  }
  const manifest = readManifest(bundleId, manifestText);
  const soPath = path.join(dir, manifest.so);
  let so: Buffer;
  try {
    so = await readFile(soPath);
  } catch (err) {
    throw bad(bundleId, `the archive holds no ${manifest.so}`, err);
  }
  const soSha = createHash("sha256").update(so).digest("hex");
  if (soSha !== manifest.soSha256)
    throw bad(bundleId, `${manifest.so} has sha256 ${soSha}, the manifest says ${manifest.soSha256}`);
  return { id: bundleId, sha256, manifest, soPath };
}
