/**
 * `hotpatch build`: compile a replacement source into patch.so, check it against the target ELF
 * (every replaced function exists, is a function and is long enough for the jump; every replacement
 * is exported; every undefined symbol resolves), then write the bundle. Nothing is written at `out`
 * until every check passed; a failed build leaves nothing behind.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, rmdir, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { readElf } from "../native/index.js";
import { BASE_FLAGS, compilePatch, compilerVersion, sourceLanguage } from "./compile.js";
import { BundleError, throwIfAborted } from "./errors.js";
import { type BundleFiles, packBundle, SO_FILE, writeBundleFiles } from "./files.js";
import { ID_PATTERN, parseManifest, QUALIFIED_SYMBOL, SYMBOL_NAME, serializeManifest } from "./manifest.js";
import { keyIdOf, loadPrivateKey, signManifest } from "./signature.js";
import {
  checkNoStateCopy,
  checkReplacement,
  checkUndefinedSymbols,
  findTargetFunction,
  readTarget,
  targetKind,
  usesExceptions,
} from "./target_checks.js";
import type { BuildOptions, BuildResult, BundleFunction, BundleManifest, FunctionSpec, LoaderKind } from "./types.js";

function args(message: string): BundleError {
  return new BundleError("EBAD_ARGUMENT", message);
}

/** Parses `OLD[=NEW]` (or a FunctionSpec) into a manifest function entry. */
export function parseFunctionSpec(spec: FunctionSpec | string): BundleFunction {
  const s: FunctionSpec =
    typeof spec === "string"
      ? spec.includes("=")
        ? { symbol: spec.slice(0, spec.indexOf("=")), replacement: spec.slice(spec.indexOf("=") + 1) }
        : { symbol: spec }
      : spec;
  const m = QUALIFIED_SYMBOL.exec(s.symbol);
  if (!m) throw args(`--function ${JSON.stringify(s.symbol)}: expected NAME or FILE.c:NAME, optionally =REPLACEMENT`);
  const replacement = s.replacement ?? (m[2] as string);
  if (!SYMBOL_NAME.test(replacement))
    throw args(`--function ${s.symbol}=${replacement}: the replacement must be a symbol name`);
  return { symbol: s.symbol, replacement, ...(s.consistency ? { consistency: s.consistency } : {}) };
}

/** Refuses an output path that exists, unless it is an empty directory (for a directory bundle). */
export async function checkOutFree(out: string, tar: boolean): Promise<void> {
  const st = await stat(out).catch(() => null);
  if (!st) return;
  if (!tar && st.isDirectory() && (await readdir(out)).length === 0) return;
  throw new BundleError("EOUT_EXISTS", `${out} already exists; choose another --out or remove it`, { path: out });
}

function defaultId(source: string, soSha: string): string {
  const stem = path
    .basename(source)
    .replace(/\.[^.]*$/, "")
    .replace(/[^A-Za-z0-9._-]/g, "-")
    .replace(/^[.-]+/, "")
    .slice(0, 50);
  return `${stem || "patch"}-${soSha.slice(0, 8)}`;
}

/**
 * Writes the bundle at `out`: a .tar packed from a staging directory, or a directory staged next
 * to `out` (same file system) and moved into place with one rename.
 */
export async function placeBundle(out: string, tar: boolean, work: string, files: BundleFiles): Promise<void> {
  await mkdir(path.dirname(out), { recursive: true });
  await checkOutFree(out, tar);
  if (tar) {
    const stage = path.join(work, "bundle");
    await mkdir(stage, { mode: 0o755 });
    await writeBundleFiles(stage, files);
    await packBundle(stage, out);
    return;
  }
  const near = await mkdtemp(path.join(path.dirname(out), ".hotpatch-build-"));
  try {
    const staged = path.join(near, "bundle");
    await mkdir(staged, { mode: 0o755 });
    await writeBundleFiles(staged, files);
    await rmdir(out).catch(() => undefined); // an empty directory given as --out
    await rename(staged, out);
  } finally {
    await rm(near, { recursive: true, force: true });
  }
}

/** What a failed build throws: its own BundleError, the abort that stopped it, or EIO saying what went wrong. */
export function buildFailure(err: unknown, signal: AbortSignal | undefined, out: string): Error {
  if (err instanceof BundleError) return err;
  throwIfAborted(signal);
  return new BundleError("EIO", `building the bundle failed: ${(err as Error).message}`, { path: out }, { cause: err });
}

/** Builds a bundle; see the file comment. Throws only BundleError. */
export async function buildBundle(opts: BuildOptions): Promise<BuildResult> {
  const { signal } = opts;
  const language = sourceLanguage(opts.source);
  if (!language) throw args(`--source ${opts.source}: expected a C (.c) or C++ (.cc, .cpp, .cxx) file`);
  if (opts.functions.length === 0) throw args("name at least one function to replace (--function OLD[=NEW])");
  const functions = opts.functions
    .map(parseFunctionSpec)
    .map((fn) => (fn.consistency || !opts.consistency ? fn : { ...fn, consistency: opts.consistency }));
  const seen = new Set<string>();
  for (const fn of functions) {
    if (seen.has(fn.symbol)) throw args(`--function ${fn.symbol} is given twice`);
    seen.add(fn.symbol);
  }
  if (opts.id !== undefined && !ID_PATTERN.test(opts.id)) {
    throw args(
      `--id ${JSON.stringify(opts.id)}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'`,
    );
  }
  const signKey = opts.signKey ? await loadPrivateKey(opts.signKey) : null;
  const out = path.resolve(opts.out);
  const tar = opts.tar === true;
  await checkOutFree(out, tar);
  const sourceBytes = await readFile(opts.source).catch((err: unknown) => {
    throw new BundleError(
      "EIO",
      `cannot read source ${opts.source}: ${(err as Error).message}`,
      { path: opts.source },
      { cause: err },
    );
  });
  const target = await readTarget(opts.target);
  const compiler = opts.compiler ?? (language === "c++" ? "g++" : "gcc");
  const flags = [...BASE_FLAGS, ...(opts.cflags ?? [])];

  const work = await mkdtemp(path.join(os.tmpdir(), "hotpatch-build-"));
  try {
    const soPath = path.join(work, SO_FILE);
    const version = await compilerVersion(compiler, signal);
    await compilePatch(compiler, path.resolve(opts.source), flags, soPath, opts.compileTimeoutMs ?? 120_000, signal);
    const patch = await readElf(soPath).catch((err: unknown) => {
      throw new BundleError(
        "ECOMPILE",
        `${compiler} did not produce a readable shared object: ${(err as Error).message}`,
        {},
        { cause: err },
      );
    });

    const warnings: string[] = [];
    const addresses = new Map<bigint, string>();
    for (const fn of functions) {
      const sym = findTargetFunction(target, fn);
      const twin = addresses.get(sym.value);
      if (twin) throw args(`--function ${fn.symbol} and ${twin} name the same function`);
      addresses.set(sym.value, fn.symbol);
      checkReplacement(patch, fn, opts.source);
    }

    const exceptions = language === "c++" && usesExceptions(patch);
    const requested = opts.loader ?? "auto";
    const loader: Exclude<LoaderKind, "auto"> = requested === "auto" ? (exceptions ? "dlopen" : "mmap") : requested;
    if (exceptions && loader === "mmap") {
      warnings.push(
        "the patch has C++ exception tables: with the mmap loader the engine must register its frames for exceptions to unwind through it",
      );
    }
    checkNoStateCopy(target, patch, opts.source);
    await checkUndefinedSymbols({ target, patch, loader, warnings });
    throwIfAborted(signal);

    const so = await readFile(soPath);
    const soSha = createHash("sha256").update(so).digest("hex");
    const manifest: BundleManifest = {
      schema: 1,
      id: opts.id ?? defaultId(opts.source, soSha),
      target: { path: path.resolve(opts.target), buildId: target.buildId as string, kind: await targetKind(target) },
      functions,
      loader,
      sha256: soSha,
      createdAt: new Date().toISOString(),
      source: {
        file: path.basename(opts.source),
        sha256: createHash("sha256").update(sourceBytes).digest("hex"),
        compiler: version,
        flags,
      },
    };
    const manifestBytes = serializeManifest(manifest);
    const signature = signKey ? await signManifest(manifestBytes, signKey) : null;

    await placeBundle(out, tar, work, { manifest: manifestBytes, so, signature });
    return {
      dir: tar ? null : out,
      tar: tar ? out : null,
      manifest: parseManifest(manifestBytes),
      warnings,
      signedBy: signKey ? keyIdOf(signKey) : null,
    };
  } catch (err) {
    throw buildFailure(err, signal, out);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
