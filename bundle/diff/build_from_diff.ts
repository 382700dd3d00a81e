/**
 * `hotpatch build --source-dir DIR --diff FIX.diff`: the program's own build, run before and after
 * the diff, compared function by function; the changed functions linked to the running program's
 * own data; the rebuilt original proven to be the binary that runs. Nothing is written at `out`
 * until every check passed.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { readElf, readObject } from "../../native/index.js";
import { buildFailure, checkOutFree, placeBundle } from "../build.js";
import { compilerVersion } from "../compile.js";
import { BundleError, throwIfAborted } from "../errors.js";
import { SO_FILE } from "../files.js";
import { ID_PATTERN, parseManifest, serializeManifest } from "../manifest.js";
import { keyIdOf, loadPrivateKey, signManifest } from "../signature.js";
import { checkUndefinedSymbols, findTargetFunction, readTarget, targetKind } from "../target_checks.js";
import type { BundleManifest } from "../types.js";
import { type ChangedFunction, compareUnits } from "./compare.js";
import { linkPatch } from "./link.js";
import { indexUnit, type Unit } from "./object_model.js";
import { planPatch } from "./plan.js";
import { mapTarget, proveSameBuild, unitInTarget } from "./target_map.js";
import { type CompileUnit, compileUnit, copyTree, discoverUnits, unitDependencies } from "./tree_build.js";
import type { DiffBuildOptions, DiffBuildResult, PatchedFunctionReport } from "./types.js";
import { applyDiffToTree, type FileDiff, lineMap, parseUnifiedDiff } from "./unified_diff.js";

const args = (message: string) => new BundleError("EBAD_ARGUMENT", message);

/** Runs `fn` over `items`, `limit` at a time. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The units the diff touches: its compiled files, and the units that include a changed header. */
async function touchedUnits(units: CompileUnit[], changed: string[], sourceDir: string, signal?: AbortSignal) {
  const bySource = new Map<string, CompileUnit>();
  for (const u of units) if (!bySource.has(u.source)) bySource.set(u.source, u);
  const all = [...bySource.values()];
  const direct = all.filter((u) => changed.includes(u.source));
  const others = changed.filter((c) => !bySource.has(c));
  if (others.length === 0) return direct;
  const deps = await pool(all, Math.max(1, os.availableParallelism()), (u) => unitDependencies(u, sourceDir, signal));
  return all.filter((u, i) => direct.includes(u) || (deps[i] as string[]).some((d) => others.includes(d)));
}

/** A line that opens a function definition, as `diff -p` and git see one: it starts with a letter. */
const FUNCTION_LINE = /^[A-Za-z_$][^;]*\(/;
const NOT_A_NAME = new Set([
  "__attribute__",
  "__declspec",
  "if",
  "while",
  "for",
  "switch",
  "return",
  "sizeof",
  "defined",
]);

/** The name a definition line defines: its first `name(` that is not an attribute or keyword. */
function definedName(line: string): string | undefined {
  if (!FUNCTION_LINE.test(line)) return undefined;
  for (const m of line.matchAll(/([A-Za-z_$][\w$:~]*)\s*\(/g)) {
    const name = (m[1] as string).split("::").pop() as string;
    if (!NOT_A_NAME.has(name)) return name;
  }
  return undefined;
}

/** The name a symbol has in the source: `f.constprop.0` → `f`; C++ `_ZN4Cart3addEi` → `add` (its last component). */
function sourceName(symbol: string): string {
  const plain = symbol.replace(/\..*$/, "");
  const m = /^_Z(N[rVK]*)?(\d.*)$/.exec(plain);
  if (!m) return plain;
  let rest = m[2] as string;
  let last = plain;
  for (let d = /^(\d+)/.exec(rest); d; d = /^(\d+)/.exec(rest)) {
    const len = Number(d[1]);
    last = rest.slice((d[1] as string).length, (d[1] as string).length + len);
    rest = rest.slice((d[1] as string).length + len);
    if (!m[1]) break; // not nested: one name
  }
  return last;
}

/**
 * The functions the diff edits: for each changed line, the definition that encloses it in the
 * original file (the nearest line above that opens one), and any definition the hunk adds.
 */
async function editedBy(files: FileDiff[], sourceDir: string): Promise<(name: string) => boolean> {
  const names = new Set<string>();
  for (const f of files) {
    const old = f.oldPath === null ? [] : (await readFile(path.join(sourceDir, f.oldPath), "utf8")).split("\n");
    for (const h of f.hunks) {
      let line = h.oldLines === 0 ? h.oldStart : h.oldStart - 1; // 0-based old line of the next hunk line
      for (const l of h.lines) {
        const added = l[0] === "+" ? definedName(l.slice(1)) : undefined;
        if (added) names.add(added);
        if (l[0] !== " ") {
          for (let k = Math.min(line, old.length - 1); k >= 0; k--) {
            const name = definedName(old[k] as string);
            if (name) {
              names.add(name);
              break;
            }
          }
        }
        if (l[0] !== "+") line++;
      }
    }
  }
  return (name) => names.has(sourceName(name));
}

function reasonText(c: ChangedFunction): string {
  switch (c.reason) {
    case "edited":
      return "its code changed: the diff edits it";
    case "inlined":
      return "its code changed, though the diff does not edit its body: a function inlined into it, or a macro or header it uses, changed";
    case "clone":
      return `its code changed: a compiler clone of ${c.of}`;
    case "cold-part":
      return `patch code: the split-off cold part of ${c.of}`;
    case "new":
      return "patch code: a new function";
  }
}

function manifestId(opts: DiffBuildOptions, soSha: string): string {
  const stem = path
    .basename(opts.diff)
    .replace(/\.[^.]*$/, "")
    .replace(/[^A-Za-z0-9._-]/g, "-")
    .replace(/^[.-]+/, "")
    .slice(0, 50);
  return `${stem || "patch"}-${soSha.slice(0, 8)}`;
}

/** Builds a bundle from a diff; see the file comment. Throws only BundleError. */
export async function buildBundleFromDiff(opts: DiffBuildOptions): Promise<DiffBuildResult> {
  const { signal } = opts;
  if (opts.loader === "dlopen")
    throw args("--loader dlopen cannot load a patch built from a diff (it is linked for the mmap loader)");
  if (opts.id !== undefined && !ID_PATTERN.test(opts.id)) {
    throw args(
      `--id ${JSON.stringify(opts.id)}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'`,
    );
  }
  const sourceDir = path.resolve(opts.sourceDir);
  const signKey = opts.signKey ? await loadPrivateKey(opts.signKey) : null;
  const out = path.resolve(opts.out);
  const tar = opts.tar === true;
  await checkOutFree(out, tar);
  const diffText = await readFile(opts.diff, "utf8").catch((err: unknown) => {
    throw new BundleError(
      "EIO",
      `cannot read the diff ${opts.diff}: ${(err as Error).message}`,
      { path: opts.diff },
      { cause: err },
    );
  });
  const files = parseUnifiedDiff(diffText);
  const target = await readTarget(opts.target);
  const kind = await targetKind(target);
  const timeoutMs = opts.compileTimeoutMs ?? 300_000;

  const work = await mkdtemp(path.join(os.tmpdir(), "hotpatch-diff-"));
  try {
    const t0 = performance.now();
    const copy = path.join(work, "tree");
    await copyTree(sourceDir, copy);
    const changedPaths = await applyDiffToTree(files, copy);
    const units = await discoverUnits({
      sourceDir,
      copy,
      work,
      command: opts.buildCommand ?? "make",
      timeoutMs,
      ...(signal ? { signal } : {}),
    });
    const touched = await touchedUnits(units, changedPaths, sourceDir, signal);
    if (touched.length === 0) {
      throw new BundleError(
        "ENOCHANGE",
        `the diff changes ${changedPaths.join(", ")}, which no translation unit of the build compiles or includes`,
      );
    }
    const objects = await pool(
      touched.flatMap((u, i) => [
        { u, root: sourceDir, out: path.join(work, `orig-${i}.o`) },
        { u, root: copy, out: path.join(work, `new-${i}.o`) },
      ]),
      Math.max(1, os.availableParallelism()),
      async (job) => {
        await compileUnit(job.u, sourceDir, job.root, job.out, timeoutMs, signal);
        return indexUnit(await readObject(job.out));
      },
    );
    throwIfAborted(signal);
    const t1 = performance.now();

    const lines = files.map(lineMap);
    const edited = await editedBy(files, sourceDir);
    const pairs = touched.map((u, i) => ({ u, original: objects[2 * i] as Unit, patched: objects[2 * i + 1] as Unit }));
    const compared = pairs.map((p) => ({ ...p, ...compareUnits(p.original, p.patched, edited, lines) }));
    const lineOnly = compared.flatMap((c) => c.lineOnly.map((i) => `${c.original.file}:${i.name}`));
    if (compared.every((c) => c.changed.length === 0)) {
      const also = lineOnly.length > 0 ? ` (only __LINE__ values changed in ${lineOnly.join(", ")})` : "";
      throw new BundleError(
        "ENOCHANGE",
        `the diff changes no compiled function of ${touched.map((u) => u.source).join(", ")}${also}`,
      );
    }
    const targetMap = mapTarget(target, await readFile(target.path), kind);
    const inputs = [];
    let proven = 0;
    for (const c of compared) {
      const tu = unitInTarget(targetMap, c.original);
      proven += await proveSameBuild(
        targetMap,
        c.original,
        tu,
        c.original.items.filter((i) => i.kind === "function"),
      );
      inputs.push({ original: c.original, patched: c.patched, changed: c.changed, target: tu });
    }
    const t2 = performance.now();
    const plan = planPatch(targetMap, inputs);
    if (plan.replacements.length === 0) {
      throw new BundleError(
        "ENOCHANGE",
        "the changed functions are none the running binary has (the linker dropped them), so there is nothing to redirect",
      );
    }
    const so = linkPatch({
      units: inputs.map((i) => i.patched),
      sections: plan.sections,
      targets: plan.targets,
      exports: plan.exports,
    });
    const t3 = performance.now();

    const soPath = path.join(work, SO_FILE);
    await writeFile(soPath, so);
    const patch = await readElf(soPath);
    const warnings: string[] = [];
    const functions = plan.replacements.map((r) => ({
      symbol: r.symbol,
      replacement: r.replacement,
      ...(opts.consistency ? { consistency: opts.consistency } : {}),
    }));
    for (const fn of functions) findTargetFunction(target, fn);
    await checkUndefinedSymbols({ target, patch, loader: "mmap", warnings });
    const soSha = createHash("sha256").update(so).digest("hex");
    const first = touched[0] as CompileUnit;
    const manifest: BundleManifest = {
      schema: 1,
      id: opts.id ?? manifestId(opts, soSha),
      target: { path: path.resolve(opts.target), buildId: target.buildId as string, kind },
      functions,
      loader: "mmap",
      sha256: soSha,
      createdAt: new Date().toISOString(),
      source: {
        file: path.basename(opts.diff),
        sha256: createHash("sha256").update(diffText).digest("hex"),
        compiler: await compilerVersion(first.compiler, signal),
        flags: first.args.slice(0, 128).map((a) => a.slice(0, 1024)),
      },
    };
    const manifestBytes = serializeManifest(manifest);
    const signature = signKey ? await signManifest(manifestBytes, signKey) : null;
    await placeBundle(out, tar, work, { manifest: manifestBytes, so, signature });
    const t4 = performance.now();
    const report: PatchedFunctionReport[] = compared.flatMap((c) =>
      c.changed.map((ch) => {
        const r = plan.replacements.find((x) => x.change === ch);
        return {
          unit: c.u.source,
          function: ch.patched.name,
          reason: ch.reason,
          why: reasonText(ch),
          replaces: r ? r.symbol : null,
        };
      }),
    );
    return {
      dir: tar ? null : out,
      tar: tar ? out : null,
      manifest: parseManifest(manifestBytes),
      warnings,
      signedBy: signKey ? keyIdOf(signKey) : null,
      units: touched.map((u) => u.source),
      functions: report,
      lineOnly,
      provenFunctions: proven,
      timings: { buildMs: t1 - t0, compareMs: t2 - t1, linkMs: t3 - t2, writeMs: t4 - t3 },
    };
  } catch (err) {
    throw buildFailure(err, signal, out);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
