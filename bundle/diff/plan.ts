/**
 * What goes into patch.so and what it refers to in the target: the changed functions' sections
 * and the constants they use are kept; every other function and every data object they reach is
 * the target's own (a static by its distance from the anchor, a global by name, an undefined name
 * as the target resolves it). A writable object must be the target's: state is never copied.
 */
import { BundleError } from "../errors.js";
import type { ChangedFunction } from "./compare.js";
import { type KeptSection, type LinkExport, type LinkTarget, relocationKey } from "./link.js";
import { type Item, reachedItem, SHF_EXECINSTR, SHF_WRITE, STT_SECTION, type Unit } from "./object_model.js";
import { type TargetMap, type TargetUnit, targetSymbolOf } from "./target_map.js";

/** One translation unit's part in the patch. */
export interface UnitPlanInput {
  original: Unit;
  patched: Unit;
  changed: ChangedFunction[];
  target: TargetUnit;
}

/** A function the patch replaces in the target. */
export interface Replacement {
  /** The target symbol, qualified `file.c:name` for a static. */
  symbol: string;
  /** The export of patch.so. */
  replacement: string;
  change: ChangedFunction;
  unit: string;
}

export interface PatchPlan {
  sections: KeptSection[];
  targets: Map<string, LinkTarget>;
  exports: LinkExport[];
  replacements: Replacement[];
}

/** Plans the patch over every unit; see the file comment. */
export function planPatch(target: TargetMap, inputs: UnitPlanInput[]): PatchPlan {
  const sections: KeptSection[] = [];
  const targets = new Map<string, LinkTarget>();
  const exports: LinkExport[] = [];
  const replacements: Replacement[] = [];
  const usedNames = new Set<string>();
  inputs.forEach((input, u) => {
    const { patched, original } = input;
    const inPatch = new Set(input.changed.map((c) => c.patched.key));
    const kept = new Set<number>();
    const queue: number[] = [];
    const keep = (section: number) => {
      if (kept.has(section)) return;
      kept.add(section);
      queue.push(section);
    };
    for (const c of input.changed) keep(c.patched.section);

    /** The target's copy of a patched item, as a reference with the given offset into it. */
    const external = (item: Item, offset: number): LinkTarget | null => {
      const before = original.byKey.get(item.key);
      const t = before ? targetSymbolOf(input.target, before) : undefined;
      if (!t) return null;
      const call = item.kind === "function" && !item.local ? "far" : "near";
      if (!t.local) return { kind: "external", name: t.name, offset, call };
      return {
        kind: "external",
        name: target.anchor.name,
        offset: Number(t.value - target.anchor.value) + offset,
        call,
      };
    };

    while (queue.length > 0) {
      const section = queue.shift() as number;
      (patched.relocations.get(section) ?? []).forEach((r, i) => {
        const key = relocationKey(u, section, i);
        const sym = patched.object.symbols[r.symbol];
        if (!sym || r.symbol === 0) throw new BundleError("ELINK", `${patched.file}: a relocation without a symbol`);
        if (sym.shndx === 0) {
          targets.set(key, { kind: "external", name: sym.name, offset: 0, call: "far" });
          return;
        }
        const symBase = sym.type === STT_SECTION ? 0 : sym.value;
        const item = reachedItem(patched, r);
        const sec = patched.object.sections[sym.shndx];
        const isCode = sec !== undefined && (sec.flags & SHF_EXECINSTR) !== 0;
        const mutable = sec !== undefined && ((sec.flags & SHF_WRITE) !== 0 || item?.tls === true);
        if (
          item &&
          (item.kind === "function" ? !inPatch.has(item.key) : mutable || unchangedConstant(original, patched, item))
        ) {
          const ref = external(item, symBase - item.value);
          if (ref) {
            // The addend of a non-GOT relocation is added by the linker; GOT slots hold the offset alone.
            targets.set(key, ref);
            return;
          }
          if (mutable) {
            throw new BundleError(
              "EDATA_CHANGED",
              `${patched.file}: the patch uses ${item.local ? "static" : "global"} ${item.name}, which the running program does not have (the linker dropped it or the diff adds it); a live patch cannot bring new state`,
              { symbol: item.name },
            );
          }
        }
        if (mutable) {
          throw new BundleError(
            "EDATA_CHANGED",
            `${patched.file}: the patch uses writable data in ${sec?.name} that is not a variable of the running program`,
          );
        }
        if (isCode && !item)
          throw new BundleError("ELINK", `${patched.file}: a reference into code of ${sec?.name} outside any function`);
        keep(sym.shndx);
        targets.set(key, { kind: "internal", unit: u, section: sym.shndx, offset: symBase });
      });
    }
    for (const s of kept) sections.push({ unit: u, section: s });

    for (const c of input.changed) {
      if (c.reason === "cold-part" || !c.original) continue;
      const t = targetSymbolOf(input.target, c.original);
      if (!t) continue; // not in the target (dropped by the linker): patch code only
      let name = `hotpatch.${c.patched.name}`;
      for (let n = 2; usedNames.has(name); n++) name = `hotpatch.${c.patched.name}.${n}`;
      usedNames.add(name);
      exports.push({ name, unit: u, section: c.patched.section, value: c.patched.value, size: c.patched.size });
      replacements.push({
        symbol: t.local ? `${original.file}:${t.name}` : t.name,
        replacement: name,
        change: c,
        unit: original.file,
      });
    }
  });
  return { sections, targets, exports, replacements };
}

/** A read-only object the target has unchanged: the patch uses the target's (its identity may matter). */
function unchangedConstant(original: Unit, patched: Unit, item: Item): boolean {
  if (item.kind !== "object") return false;
  const before = original.byKey.get(item.key);
  if (!before || before.size !== item.size) return false;
  const a = original.object.sections[before.section]?.bytes.subarray(before.value, before.value + before.size);
  const b = patched.object.sections[item.section]?.bytes.subarray(item.value, item.value + item.size);
  return (
    a !== undefined &&
    b !== undefined &&
    a.equals(b) &&
    !(original.relocations.get(before.section)?.length || patched.relocations.get(item.section)?.length)
  );
}
