/**
 * The one place a staged upload is verified before it is stored. Today: the archive's sha256 must
 * equal the header's, and the archive must be a tar holding manifest.json (bundle/'s schema 1) and
 * patch.so with the sha256 the manifest names. When bundle/index.ts lands on main, replace the body
 * after the header check with its `openBundle(archive, { trustedKeys })` (which also validates every
 * manifest field, checks patch.so's exports and the signature), copy `bundle.dir` into `dir`, and
 * keep this signature.
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

const hexRe = /^[0-9a-f]+$/;

/** Checks the manifest fields the agent relies on (schema 1 of bundle/); openBundle validates every field. */
function readManifest(bundleId: string, text: string): BundleManifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw bad(bundleId, "manifest.json is not JSON", err);
  }
  const o = (m ?? {}) as Record<string, unknown>;
  const target = (o.target ?? {}) as Record<string, unknown>;
  const fns = o.functions;
  if (o.schema !== 1)
    throw bad(bundleId, `manifest schema ${JSON.stringify(o.schema)} is not 1; rebuild the bundle with this hotpatch`);
  if (o.id !== bundleId) throw bad(bundleId, `manifest id ${JSON.stringify(o.id)} differs from the announced id`);
  if (typeof target.buildId !== "string" || !hexRe.test(target.buildId))
    throw bad(bundleId, "manifest target.buildId must be lowercase hex");
  if (target.kind !== "executable" && target.kind !== "library")
    throw bad(bundleId, "manifest target.kind must be executable or library");
  if (target.path !== undefined && (typeof target.path !== "string" || !path.isAbsolute(target.path))) {
    throw bad(bundleId, "manifest target.path, when given, must be an absolute path");
  }
  const fnOk = (f: Record<string, unknown>) =>
    typeof f?.symbol === "string" &&
    f.symbol !== "" &&
    typeof f?.replacement === "string" &&
    f.replacement !== "" &&
    (f.consistency === undefined || f.consistency === "strict" || f.consistency === "entry");
  if (!Array.isArray(fns) || fns.length === 0 || !fns.every(fnOk)) {
    throw bad(bundleId, "manifest functions must be a non-empty list of {symbol, replacement, consistency?}");
  }
  if (typeof o.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(o.sha256))
    throw bad(bundleId, "manifest sha256 must be the sha256 (hex) of patch.so");
  const manifest: BundleManifest = {
    schema: 1,
    id: bundleId,
    target: { buildId: target.buildId, kind: target.kind },
    functions: (fns as BundleManifest["functions"]).map((f) => ({
      symbol: f.symbol,
      replacement: f.replacement,
      ...(f.consistency ? { consistency: f.consistency } : {}),
    })),
    sha256: o.sha256,
  };
  if (typeof target.path === "string") manifest.target.path = target.path;
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
  const soPath = path.join(dir, "patch.so");
  let so: Buffer;
  try {
    so = await readFile(soPath);
  } catch (err) {
    throw bad(bundleId, "the archive holds no patch.so", err);
  }
  const soSha = createHash("sha256").update(so).digest("hex");
  if (soSha !== manifest.sha256)
    throw bad(bundleId, `patch.so has sha256 ${soSha}, the manifest says ${manifest.sha256}`);
  return { id: bundleId, sha256, manifest, soPath };
}
