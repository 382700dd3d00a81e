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
import { type ElfInfo, type ElfSymbol, readElf } from "../native/index.js";
import { BASE_FLAGS, compilePatch, compilerVersion, sourceLanguage } from "./compile.js";
import { BundleError, throwIfAborted } from "./errors.js";
import { packBundle, SO_FILE, writeBundleFiles } from "./files.js";
import { baseName, neededLibraries } from "./libraries.js";
import { ID_PATTERN, QUALIFIED_SYMBOL, SYMBOL_NAME, serializeManifest } from "./manifest.js";
import { keyIdOf, loadPrivateKey, signManifest } from "./signature.js";
import type {
  BuildOptions,
  BuildResult,
  BundleFunction,
  BundleManifest,
  FunctionSpec,
  LoaderKind,
  TargetKind,
} from "./types.js";

/** Bytes of a rel32 `jmp` (E9 + 4). */
export const NEAR_JUMP_BYTES = 5;
/** Bytes of the absolute jump used when the replacement is beyond ±2 GiB. */
export const FAR_JUMP_BYTES = 14;
const X86_64 = 62;
const PT_INTERP = 3;
/** Symbols whose presence means C++ exceptions may unwind through the patch. */
const EXCEPTION_SYMBOLS = new Set(["__gxx_personality_v0", "_Unwind_Resume", "__cxa_throw", "__cxa_begin_catch"]);

function args(message: string): BundleError {
  return new BundleError("EBUILD_ARGS", message);
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

function splitQualified(symbol: string): { file: string | null; name: string } {
  const m = QUALIFIED_SYMBOL.exec(symbol);
  return { file: m?.[1] ?? null, name: m?.[2] ?? symbol };
}

function fileMatches(s: ElfSymbol, file: string): boolean {
  return s.file !== undefined && (s.file === file || path.basename(s.file) === file);
}

/** Finds the one function of the target a manifest entry names, or throws. */
function findTargetFunction(target: ElfInfo, fn: BundleFunction): ElfSymbol {
  const { file, name } = splitQualified(fn.symbol);
  let candidates = target.symbols.filter((s) => s.defined && baseName(s.name) === name);
  if (file) candidates = candidates.filter((s) => fileMatches(s, file));
  if (candidates.length === 0) {
    const hint = target.symbols.some((s) => s.table === "symtab")
      ? ""
      : " (the target has no .symtab: static functions are only visible with its debug symbols)";
    throw new BundleError("ENOSYMBOL", `the target ${target.path} has no function ${fn.symbol}${hint}`, {
      path: target.path,
      symbol: fn.symbol,
    });
  }
  const byAddress = new Map<bigint, ElfSymbol>();
  for (const s of candidates) if (!byAddress.has(s.value) || s.table === "symtab") byAddress.set(s.value, s);
  if (byAddress.size > 1) {
    const files = [...byAddress.values()].map((s) => s.file ?? "(exported)").join(", ");
    throw new BundleError(
      "EAMBIGUOUS_SYMBOL",
      `${fn.symbol} names ${byAddress.size} functions of ${target.path} (in ${files}); qualify it as FILE.c:${name}`,
      { path: target.path, symbol: fn.symbol },
    );
  }
  const sym = [...byAddress.values()][0] as ElfSymbol;
  if (sym.kind !== "function") {
    const what =
      sym.kind === "ifunc" ? "an ifunc resolver (patch the implementation it selects)" : `a ${sym.kind} symbol`;
    throw new BundleError("ENOT_FUNCTION", `${fn.symbol} in ${target.path} is ${what}, not a function`, {
      path: target.path,
      symbol: fn.symbol,
    });
  }
  if (sym.size < BigInt(NEAR_JUMP_BYTES)) {
    const size = sym.size === 0n ? "has no recorded size" : `is ${sym.size} bytes long`;
    throw new BundleError(
      "EFUNC_TOO_SHORT",
      `${fn.symbol} in ${target.path} ${size}; the jump written over its entry needs ${NEAR_JUMP_BYTES} bytes: patch its callers instead`,
      { path: target.path, symbol: fn.symbol },
    );
  }
  return sym;
}

/** Checks that patch.so exports each replacement as a function. */
function checkReplacement(patch: ElfInfo, fn: BundleFunction, source: string): void {
  const exported = patch.symbols.find((s) => s.table === "dynsym" && s.defined && s.name === fn.replacement);
  if (exported?.kind === "function") return;
  const local = patch.symbols.find((s) => s.table === "symtab" && s.defined && s.name === fn.replacement);
  const why = exported
    ? `is a ${exported.kind}, not a function`
    : local
      ? "is not exported (remove `static` and hidden visibility from it)"
      : `is not defined in ${path.basename(source)}`;
  throw new BundleError("ENOSYMBOL", `replacement ${fn.replacement} for ${fn.symbol} ${why}`, {
    path: source,
    symbol: fn.replacement,
  });
}

interface ResolveInput {
  target: ElfInfo;
  patch: ElfInfo;
  loader: Exclude<LoaderKind, "auto">;
  warnings: string[];
}

/** Every strong undefined symbol of patch.so must be defined by the target or the libraries it loads. */
async function checkUndefinedSymbols({ target, patch, loader, warnings }: ResolveInput): Promise<void> {
  const undefinedNames = [
    ...new Set(
      patch.symbols.filter((s) => s.table === "dynsym" && !s.defined && s.binding !== "weak").map((s) => s.name),
    ),
  ];
  if (undefinedNames.length === 0) return;

  const exported = new Set<string>();
  const localOnly = new Map<string, ElfSymbol[]>();
  for (const s of target.symbols) {
    if (!s.defined) continue;
    const name = baseName(s.name);
    if (s.binding === "local") localOnly.set(name, [...(localOnly.get(name) ?? []), s]);
    else exported.add(name);
  }
  const libraries = await neededLibraries(target);
  // dlopen also loads what patch.so itself needs (libstdc++ for a C++ patch of a C target).
  if (loader === "dlopen") libraries.push(...(await neededLibraries(patch)));
  for (const lib of libraries) {
    if (!lib.elf) {
      warnings.push(
        `library ${lib.name} needed by the target was not found on this host; symbols it defines count as missing`,
      );
      continue;
    }
    for (const s of lib.elf.symbols) {
      if (s.table === "dynsym" && s.defined && s.binding !== "local") exported.add(baseName(s.name));
    }
  }

  const missing: string[] = [];
  for (const name of undefinedNames) {
    if (exported.has(name)) continue;
    const locals = localOnly.get(name);
    if (!locals) {
      missing.push(name);
      continue;
    }
    const addresses = new Set(locals.map((s) => s.value));
    if (addresses.size > 1) {
      warnings.push(
        `${name} is a static defined ${addresses.size} times in the target (${locals.map((s) => s.file ?? "?").join(", ")}); the engine must pick one`,
      );
    }
    if (loader === "dlopen") {
      warnings.push(
        `${name} is a static (not exported) symbol of the target: the dynamic linker cannot resolve it for the dlopen loader`,
      );
    }
  }
  if (missing.length > 0) {
    const list = missing.slice(0, 20).join(", ") + (missing.length > 20 ? `, … (${missing.length} in all)` : "");
    throw new BundleError(
      "ENOSYMBOL",
      `patch.so uses ${list}, which neither ${target.path} nor the libraries it loads define`,
      { path: target.path, symbol: missing[0] as string },
    );
  }
}

function usesExceptions(patch: ElfInfo): boolean {
  return (
    patch.sections.some((s) => s.name === ".gcc_except_table") ||
    patch.symbols.some((s) => !s.defined && EXCEPTION_SYMBOLS.has(baseName(s.name)))
  );
}

function targetKind(target: ElfInfo): TargetKind {
  if (target.type === "executable") return "executable";
  return target.programHeaders.some((p) => p.type === PT_INTERP) ? "executable" : "library";
}

async function readTarget(file: string): Promise<ElfInfo> {
  let target: ElfInfo;
  try {
    target = await readElf(file);
  } catch (err) {
    throw new BundleError(
      "EBAD_TARGET",
      `cannot read target ${file}: ${(err as Error).message}`,
      { path: file },
      { cause: err },
    );
  }
  if (target.machine !== X86_64 || target.bits !== 64 || (target.type !== "executable" && target.type !== "shared")) {
    throw new BundleError("EBAD_TARGET", `target ${file} is not an x86-64 executable or shared library`, {
      path: file,
    });
  }
  if (!target.buildId) {
    throw new BundleError("EBAD_TARGET", `target ${file} has no build-id; rebuild it with -Wl,--build-id`, {
      path: file,
    });
  }
  return target;
}

/** Refuses an output path that exists, unless it is an empty directory (for a directory bundle). */
async function checkOutFree(out: string, tar: boolean): Promise<void> {
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
      if (sym.size < BigInt(FAR_JUMP_BYTES)) {
        warnings.push(
          `${fn.symbol} is ${sym.size} bytes: only a 5-byte near jump fits, so patch.so must land within ±2 GiB of it (the 14-byte far jump does not fit)`,
        );
      }
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
    await checkUndefinedSymbols({ target, patch, loader, warnings });
    throwIfAborted(signal);

    const so = await readFile(soPath);
    const soSha = createHash("sha256").update(so).digest("hex");
    const manifest: BundleManifest = {
      schema: 1,
      id: opts.id ?? defaultId(opts.source, soSha),
      target: { path: path.resolve(opts.target), buildId: target.buildId as string, kind: targetKind(target) },
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

    const files = { manifest: manifestBytes, so, signature };
    await mkdir(path.dirname(out), { recursive: true });
    await checkOutFree(out, tar);
    if (tar) {
      const stage = path.join(work, "bundle");
      await mkdir(stage, { mode: 0o755 });
      await writeBundleFiles(stage, files);
      await packBundle(stage, out);
    } else {
      // Staged next to `out` (same file system), then moved into place in one rename.
      const near = await mkdtemp(path.join(path.dirname(out), ".hotpatch-build-"));
      try {
        const staged = path.join(near, "bundle");
        await mkdir(staged, { mode: 0o755 });
        await writeBundleFiles(staged, files);
        await rmdir(out).catch(() => undefined);
        await rename(staged, out);
      } finally {
        await rm(near, { recursive: true, force: true });
      }
    }
    return {
      dir: tar ? null : out,
      tar: tar ? out : null,
      manifest: JSON.parse(manifestBytes.toString("utf8")) as BundleManifest,
      warnings,
      signedBy: signKey ? keyIdOf(signKey) : null,
    };
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throwIfAborted(signal);
    throw new BundleError(
      "EIO",
      `building the bundle failed: ${(err as Error).message}`,
      { path: out },
      { cause: err },
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
