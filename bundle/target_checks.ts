/**
 * Checks of a compiled patch against its target ELF, before anything is written: the functions to
 * replace (exist, are functions, are long enough for the jump), the replacements (exported by
 * patch.so), and every undefined symbol of patch.so (defined by the target or its libraries).
 */
import path from "node:path";
import { type ElfInfo, type ElfSymbol, readElf } from "../native/index.js";
import { BundleError } from "./errors.js";
import { baseName, neededLibraries, readDynamicDeps } from "./libraries.js";
import { QUALIFIED_SYMBOL } from "./manifest.js";
import type { BundleFunction, LoaderKind, TargetKind } from "./types.js";

/**
 * Bytes of a rel32 `jmp` (E9 + 4): all a function needs, whichever loader places the patch (a
 * replacement beyond ±2 GiB is reached through a near trampoline page the engine maps).
 */
export const NEAR_JUMP_BYTES = 5;
const X86_64 = 62;
const PT_INTERP = 3;
/** Symbols whose presence means C++ exceptions may unwind through the patch. */
const EXCEPTION_SYMBOLS = new Set(["__gxx_personality_v0", "_Unwind_Resume", "__cxa_throw", "__cxa_begin_catch"]);

function splitQualified(symbol: string): { file: string | null; name: string } {
  const m = QUALIFIED_SYMBOL.exec(symbol);
  return { file: m?.[1] ?? null, name: m?.[2] ?? symbol };
}

function fileMatches(s: ElfSymbol, file: string): boolean {
  return s.file !== undefined && (s.file === file || path.basename(s.file) === file);
}

/** Finds the one function of the target a manifest entry names, or throws. */
export function findTargetFunction(target: ElfInfo, fn: BundleFunction): ElfSymbol {
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
  if (byAddress.size > 1 && [...byAddress.values()].every((s) => s.binding !== "local")) {
    throw new BundleError(
      "EAMBIGUOUS_SYMBOL",
      `${fn.symbol} is exported ${byAddress.size} times by ${target.path} (symbol versions); hotpatch cannot choose a symbol version yet`,
      { path: target.path, symbol: fn.symbol },
    );
  }
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
export function checkReplacement(patch: ElfInfo, fn: BundleFunction, source: string): void {
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

export interface ResolveInput {
  target: ElfInfo;
  patch: ElfInfo;
  loader: Exclude<LoaderKind, "auto">;
  warnings: string[];
}

/** Every strong undefined symbol of patch.so must be defined by the target or the libraries it loads. */
export async function checkUndefinedSymbols({ target, patch, loader, warnings }: ResolveInput): Promise<void> {
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

/**
 * A fix file must not define a variable the target already has (a static or global of the same
 * name): the patch would count on its own fresh copy while the program's state stays behind.
 * Declared `extern`, the name resolves to the running program's object (statics included).
 */
export function checkNoStateCopy(target: ElfInfo, patch: ElfInfo, source: string): void {
  const targetObjects = new Map<string, ElfSymbol>();
  for (const s of target.symbols) {
    if (s.defined && (s.kind === "object" || s.kind === "tls")) targetObjects.set(baseName(s.name), s);
  }
  const own = path.basename(source);
  for (const s of patch.symbols) {
    if (!s.defined || (s.kind !== "object" && s.kind !== "tls")) continue;
    // The fix's own variables: its statics (by STT_FILE) and what it exports, not the C runtime's.
    if (s.table === "symtab" ? s.binding !== "local" || s.file !== own : s.binding === "local") continue;
    const theirs = targetObjects.get(s.name);
    if (!theirs) continue;
    const where = theirs.binding === "local" ? `the static ${theirs.file ?? "?"}:${s.name}` : `the global ${s.name}`;
    throw new BundleError(
      "EDATA_DUPLICATE",
      `${path.basename(source)} defines ${s.name}, and ${target.path} has ${where}: the patch would use a fresh copy and lose the running value. Declare it \`extern\` (it then resolves to the program's own, statics too), or build from a diff (--source-dir DIR --diff FIX.diff)`,
      { path: source, symbol: s.name },
    );
  }
}

export function usesExceptions(patch: ElfInfo): boolean {
  return (
    patch.sections.some((s) => s.name === ".gcc_except_table") ||
    patch.symbols.some((s) => !s.defined && EXCEPTION_SYMBOLS.has(baseName(s.name)))
  );
}

/** ET_EXEC, or a PIE: DF_1_PIE, or (older linkers) an interpreter and no soname. libc has an interpreter too, and a soname. */
export async function targetKind(target: ElfInfo): Promise<TargetKind> {
  if (target.type === "executable") return "executable";
  const dyn = await readDynamicDeps(target);
  if (dyn.pie) return "executable";
  return target.programHeaders.some((p) => p.type === PT_INTERP) && dyn.soname === null ? "executable" : "library";
}

export async function readTarget(file: string): Promise<ElfInfo> {
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
