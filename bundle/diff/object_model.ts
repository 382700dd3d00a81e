/**
 * The view of a relocatable object that comparison and linking share: its functions and data
 * objects ("items") with correlation keys, and a normalised signature of each item (bytes with
 * relocated fields zeroed, relocations named by what they reach, not by symbol indices).
 */
import { createHash } from "node:crypto";
import type { ObjectFile, ObjectRelocation, ObjectSection } from "../../native/index.js";

export const SHT_NOBITS = 8;
export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;
export const SHF_MERGE = 0x10;
export const SHF_STRINGS = 0x20;
export const SHF_TLS = 0x400;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
export const STT_FILE = 4;
export const STT_TLS = 6;
export const STB_LOCAL = 0;
const SHN_LORESERVE = 0xff00;

/** Bytes a relocation of each type writes (0: writes nothing). */
export const RELOC_WIDTH: Record<number, number> = {
  0: 0,
  1: 8,
  2: 4,
  3: 4,
  4: 4,
  9: 4,
  10: 4,
  11: 4,
  12: 2,
  13: 2,
  14: 1,
  15: 1,
  16: 8,
  17: 8,
  18: 8,
  19: 4,
  20: 4,
  21: 4,
  22: 4,
  23: 4,
  24: 8,
  25: 8,
  26: 4,
  32: 4,
  33: 8,
  34: 4,
  35: 0,
  41: 4,
  42: 4,
};
/** PC-relative types whose field is 4 bytes before the end of the instruction operand (`addend` is then usually -4). */
const PC_RELATIVE = new Set([2, 4, 9, 19, 20, 22, 41, 42]);

/** A function or data object defined by an object file. */
export interface Item {
  name: string;
  /** Correlation key: the name, without the `.N` numbers a compiler gives local statics and clones. */
  key: string;
  kind: "function" | "object";
  local: boolean;
  symbol: number;
  section: number;
  value: number;
  size: number;
  writable: boolean;
  tls: boolean;
}

/** An object file with its items indexed. */
export interface Unit {
  object: ObjectFile;
  /** The source file name the object records (its STT_FILE symbol), as the linker copies it into the target. */
  file: string;
  items: Item[];
  byKey: Map<string, Item>;
  bySymbol: Map<number, Item>;
  /** Items of each section, by offset. */
  bySection: Map<number, Item[]>;
  /** Relocations of each section. */
  relocations: Map<number, ObjectRelocation[]>;
}

/** `count.0` → `count`, `f.constprop.0` → `f.constprop`, `f.part.0.cold` → `f.part.cold`. */
export function correlationKey(name: string): string {
  return name.replace(/\.\d+(?=\.|$)/g, "");
}

export function isCold(item: Item): boolean {
  return item.kind === "function" && /\.cold$/.test(item.key);
}

/** The function a `.cold` part belongs to. */
export function parentKey(key: string): string {
  return key.replace(/\.cold$/, "");
}

export function indexUnit(object: ObjectFile): Unit {
  const items: Item[] = [];
  const byKey = new Map<string, Item>();
  const bySymbol = new Map<number, Item>();
  const bySection = new Map<number, Item[]>();
  let file = "";
  object.symbols.forEach((s, i) => {
    if (s.type === STT_FILE && file === "") file = s.name;
    const kind = s.type === STT_FUNC ? "function" : s.type === STT_OBJECT || s.type === STT_TLS ? "object" : null;
    if (kind === null || s.shndx === 0 || s.shndx >= SHN_LORESERVE || s.name === "") return;
    const sec = object.sections[s.shndx] as ObjectSection;
    let key = correlationKey(s.name);
    if (s.bind === STB_LOCAL && byKey.has(key)) {
      let n = 2;
      while (byKey.has(`${key}#${n}`)) n++;
      key = `${key}#${n}`;
    }
    if (byKey.has(key)) return; // a global alias of an item already seen
    const item: Item = {
      name: s.name,
      key,
      kind,
      local: s.bind === STB_LOCAL,
      symbol: i,
      section: s.shndx,
      value: s.value,
      size: s.size,
      writable: (sec.flags & SHF_WRITE) !== 0,
      tls: (sec.flags & SHF_TLS) !== 0,
    };
    items.push(item);
    byKey.set(key, item);
    bySymbol.set(i, item);
    bySection.set(s.shndx, [...(bySection.get(s.shndx) ?? []), item]);
  });
  for (const list of bySection.values()) list.sort((a, b) => a.value - b.value);
  const relocations = new Map<number, ObjectRelocation[]>();
  for (const r of object.relocations) relocations.set(r.section, [...(relocations.get(r.section) ?? []), r]);
  for (const list of relocations.values()) list.sort((a, b) => a.offset - b.offset);
  return { object, file, items, byKey, bySymbol, bySection, relocations };
}

/** Where in its section a relocation points: its addend, plus 4 for a PC-relative field. */
export function pointedOffset(r: ObjectRelocation): number {
  return r.addend + (PC_RELATIVE.has(r.type) ? 4 : 0);
}

/** The item a relocation's symbol (plus addend, for a section symbol) reaches, if it reaches one. */
export function reachedItem(unit: Unit, r: ObjectRelocation): Item | undefined {
  const sym = unit.object.symbols[r.symbol];
  if (!sym) return undefined;
  const direct = unit.bySymbol.get(r.symbol);
  if (direct) return direct;
  if (sym.type !== STT_SECTION) {
    // an alias or label inside an item
    return (unit.bySection.get(sym.shndx) ?? []).find(
      (i) => sym.value >= i.value && sym.value < i.value + Math.max(i.size, 1),
    );
  }
  const at = pointedOffset(r);
  const list = unit.bySection.get(sym.shndx) ?? [];
  return (
    list.find((i) => at >= i.value && at < i.value + Math.max(i.size, 1)) ??
    (list.length === 1 && at <= 0 ? list[0] : undefined)
  );
}

function stringAt(bytes: Buffer, at: number): string {
  const start = Math.max(0, Math.min(at, bytes.length));
  let end = bytes.indexOf(0, start);
  if (end < 0) end = bytes.length;
  return bytes.subarray(start, end).toString("latin1");
}

/** A stable name for what a relocation reaches, independent of symbol and section indices. */
export function relocationTarget(unit: Unit, r: ObjectRelocation, depth = 0): string {
  const sym = unit.object.symbols[r.symbol];
  if (!sym || r.symbol === 0) return `abs+${r.addend}`;
  if (sym.shndx === 0) return `ext:${sym.name}+${r.addend}`;
  const item = reachedItem(unit, r);
  const base = sym.type === STT_SECTION ? 0 : sym.value;
  if (item) return `${item.key}+${base + r.addend - item.value}`;
  const sec = unit.object.sections[sym.shndx] as ObjectSection;
  if ((sec.flags & SHF_MERGE) !== 0 && (sec.flags & SHF_STRINGS) !== 0) {
    return `str:${JSON.stringify(stringAt(sec.bytes, base + pointedOffset(r)))}${r.addend - pointedOffset(r)}`;
  }
  if ((sec.flags & SHF_MERGE) !== 0 && sec.entsize > 0) {
    const at = base + pointedOffset(r);
    return `cst:${sec.bytes.subarray(at, at + sec.entsize).toString("hex")}${r.addend - pointedOffset(r)}`;
  }
  // An anonymous section (a jump table, .rodata of constants): named by its normalised content.
  return `sec:${depth < 2 ? sectionDigest(unit, sym.shndx, depth + 1) : sec.name}+${base + r.addend}`;
}

/** Bytes with every relocated field zeroed, and the relocations in range described by target. */
export function signature(unit: Unit, section: number, start: number, size: number, depth = 0): string {
  const sec = unit.object.sections[section] as ObjectSection;
  const bytes = sec.type === SHT_NOBITS ? Buffer.alloc(size) : Buffer.from(sec.bytes.subarray(start, start + size));
  const relocs: string[] = [];
  for (const r of unit.relocations.get(section) ?? []) {
    if (r.offset < start || r.offset >= start + size) continue;
    bytes.fill(0, r.offset - start, r.offset - start + (RELOC_WIDTH[r.type] ?? 4));
    relocs.push(`${r.offset - start}:${r.type}:${relocationTarget(unit, r, depth)}`);
  }
  return createHash("sha256").update(bytes).update(relocs.join("\n")).digest("hex");
}

function sectionDigest(unit: Unit, section: number, depth: number): string {
  const sec = unit.object.sections[section] as ObjectSection;
  return signature(unit, section, 0, sec.size, depth).slice(0, 16);
}

export function itemSignature(unit: Unit, item: Item): string {
  return signature(unit, item.section, item.value, item.size);
}

/** An item's bytes with relocated fields zeroed (for comparing with the target's bytes). */
export function maskedBytes(unit: Unit, item: Item): { bytes: Buffer; mask: Uint8Array } {
  const sec = unit.object.sections[item.section] as ObjectSection;
  const bytes = Buffer.from(sec.bytes.subarray(item.value, item.value + item.size));
  const mask = new Uint8Array(item.size);
  for (const r of unit.relocations.get(item.section) ?? []) {
    if (r.offset < item.value || r.offset >= item.value + item.size) continue;
    const from = r.offset - item.value;
    mask.fill(1, from, Math.min(item.size, from + (RELOC_WIDTH[r.type] ?? 4)));
  }
  return { bytes, mask };
}
