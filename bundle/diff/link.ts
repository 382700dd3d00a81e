/**
 * A small static linker for the patch: lays the kept sections of the patched objects out in a
 * position-independent ELF shared object (patch.so) whose dynamic relocations the engine's mmap
 * loader applies. Every reference to the running program (its functions, globals, statics) is a
 * dynamic relocation against a symbol the engine resolves in the target, plus an addend; so a
 * static is reached as "anchor + its distance from the anchor", which the bundle's build-id check
 * makes exact, and the patch brings no copy of any state.
 */
import { BundleError } from "../errors.js";
import { SHF_EXECINSTR, SHF_WRITE, type Unit } from "./object_model.js";

/** Where a relocation of kept code or constants points. */
export type LinkTarget =
  | { kind: "internal"; unit: number; section: number; offset: number }
  | { kind: "external"; name: string; offset: number; call: "near" | "far" };

/** One section of one unit that goes into patch.so. */
export interface KeptSection {
  unit: number;
  section: number;
}

/** A function patch.so exports (a replacement). */
export interface LinkExport {
  name: string;
  unit: number;
  section: number;
  value: number;
  size: number;
}

export interface LinkInput {
  units: Unit[];
  sections: KeptSection[];
  /** The target of each relocation of each kept section, keyed `unit:section:relocation index in unit.relocations.get(section)`. */
  targets: Map<string, LinkTarget>;
  exports: LinkExport[];
}

const PAGE = 4096;
const R = { NONE: 0, R64: 1, PC32: 2, PLT32: 4, GOTPCREL: 9, RELATIVE: 8, GOTPCRELX: 41, REX_GOTPCRELX: 42 } as const;
const RELOC_NAMES: Record<number, string> = {
  10: "R_X86_64_32",
  11: "R_X86_64_32S",
  19: "R_X86_64_TLSGD",
  20: "R_X86_64_TLSLD",
  21: "R_X86_64_DTPOFF32",
  22: "R_X86_64_GOTTPOFF",
  23: "R_X86_64_TPOFF32",
  24: "R_X86_64_PC64",
  25: "R_X86_64_GOTOFF64",
  26: "R_X86_64_GOTPC32",
};

export function relocationKey(unit: number, section: number, index: number): string {
  return `${unit}:${section}:${index}`;
}

const align = (v: number, a: number) => (a > 1 ? Math.ceil(v / a) * a : v);

interface DynReloc {
  offset: number;
  type: number;
  symbol: string | null;
  addend: number;
}

class StringTable {
  readonly parts: Buffer[] = [Buffer.from([0])];
  size = 1;
  private readonly seen = new Map<string, number>();
  add(s: string): number {
    const known = this.seen.get(s);
    if (known !== undefined) return known;
    const at = this.size;
    const b = Buffer.from(`${s}\0`);
    this.parts.push(b);
    this.size += b.length;
    this.seen.set(s, at);
    return at;
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function unsupported(unit: Unit, type: number, what: string): BundleError {
  const name = RELOC_NAMES[type] ?? `relocation type ${type}`;
  const hint =
    type === 10 || type === 11
      ? "; build the program position-independent (-fPIE or -fPIC, the default on Debian)"
      : type >= 19 && type <= 23
        ? "; the patch code uses thread-local storage, which the engine cannot link yet"
        : "";
  return new BundleError(
    "ELINK",
    `${unit.file}: ${what} uses ${name}, which hotpatch cannot link into a live patch${hint}`,
  );
}

/** Links patch.so; see the file comment. */
export function linkPatch(input: LinkInput): Buffer {
  const { units } = input;
  // Layout: page 0 headers and dynamic tables, then .rodata, then .text (+ call stubs), then .got.
  const text: KeptSection[] = [];
  const rodata: KeptSection[] = [];
  for (const k of input.sections) {
    const sec = units[k.unit]?.object.sections[k.section];
    if (!sec) throw new Error("kept section out of range");
    if ((sec.flags & SHF_WRITE) !== 0) throw new Error(`writable section ${sec.name} kept`);
    ((sec.flags & SHF_EXECINSTR) !== 0 ? text : rodata).push(k);
  }
  const names = new Set<string>();
  const stubs = new Map<string, number>(); // name → stub index (far calls by name go through a GOT slot)
  const gotSlots = new Map<string, number>();
  const slotKey = (t: LinkTarget) =>
    t.kind === "internal" ? `i:${t.unit}:${t.section}:${t.offset}` : `e:${t.name}:${t.offset}`;
  const slotOf = (t: LinkTarget) => {
    const k = slotKey(t);
    if (!gotSlots.has(k)) gotSlots.set(k, gotSlots.size);
    return gotSlots.get(k) as number;
  };
  const slotTargets = new Map<number, LinkTarget>();
  // Pass 1: what each relocation needs (names, stubs, GOT slots).
  for (const k of input.sections) {
    const list = units[k.unit]?.relocations.get(k.section) ?? [];
    list.forEach((r, i) => {
      const t = input.targets.get(relocationKey(k.unit, k.section, i));
      if (!t) throw new Error(`no link target for relocation ${i} of section ${k.section}`);
      if (t.kind === "external") names.add(t.name);
      switch (r.type) {
        case R.NONE:
        case R.PC32:
        case R.R64:
          break;
        case R.PLT32:
          if (t.kind === "external" && t.call === "far" && !stubs.has(t.name)) stubs.set(t.name, stubs.size);
          break;
        case R.GOTPCREL:
        case R.GOTPCRELX:
        case R.REX_GOTPCRELX:
          slotTargets.set(slotOf(t), t);
          break;
        default:
          throw unsupported(units[k.unit] as Unit, r.type, `${units[k.unit]?.object.sections[k.section]?.name}`);
      }
    });
  }
  for (const name of stubs.keys())
    slotTargets.set(slotOf({ kind: "external", name, offset: 0, call: "far" }), {
      kind: "external",
      name,
      offset: 0,
      call: "far",
    });

  // Dynamic symbols: undefined names, then the exports.
  const dynstr = new StringTable();
  const symNames = [...names].sort();
  const symIndex = new Map<string, number>();
  for (const [i, n] of symNames.entries()) symIndex.set(n, i + 1);
  const exportNames = input.exports.map((e) => e.name);
  for (const n of [...symNames, ...exportNames]) dynstr.add(n);
  const dynsymCount = 1 + symNames.length + exportNames.length;

  // Count dynamic relocations (exact: one per external PC32/R64/near PLT32, one per GOT slot, one per internal R64).
  let dynCount = gotSlots.size;
  for (const k of input.sections) {
    (units[k.unit]?.relocations.get(k.section) ?? []).forEach((r, i) => {
      const t = input.targets.get(relocationKey(k.unit, k.section, i)) as LinkTarget;
      if (r.type === R.R64) dynCount++;
      else if (
        (r.type === R.PC32 || (r.type === R.PLT32 && t.kind === "external" && t.call === "near")) &&
        t.kind === "external"
      )
        dynCount++;
    });
  }

  const PHNUM = 3;
  let at = 64 + 56 * PHNUM;
  const dynsymAt = align(at, 8);
  at = dynsymAt + 24 * dynsymCount;
  const dynstrAt = at;
  at += dynstr.size;
  const relaAt = align(at, 8);
  at = relaAt + 24 * dynCount;
  const place = new Map<string, number>(); // "unit:section" → address
  const placeAll = (list: KeptSection[]) => {
    for (const k of list) {
      const sec = units[k.unit]?.object.sections[k.section];
      at = align(at, Math.max(1, sec?.align ?? 1));
      place.set(`${k.unit}:${k.section}`, at);
      at += sec?.size ?? 0;
    }
  };
  const rodataAt = at;
  placeAll(rodata);
  const roEnd = at;
  const textAt = align(at, PAGE);
  at = textAt;
  placeAll(text);
  const stubsAt = align(at, 16);
  at = stubsAt + 8 * stubs.size;
  const textEnd = at;
  const gotAt = align(at, PAGE);
  const gotEnd = gotAt + 8 * gotSlots.size;
  const fileEnd = Math.max(gotEnd, gotAt + 8);

  const image = Buffer.alloc(fileEnd);
  for (const k of input.sections) {
    const sec = units[k.unit]?.object.sections[k.section];
    if (sec && sec.bytes.length > 0) sec.bytes.copy(image, place.get(`${k.unit}:${k.section}`) as number);
  }
  const addrOf = (t: Extract<LinkTarget, { kind: "internal" }>) => {
    const base = place.get(`${t.unit}:${t.section}`);
    if (base === undefined) throw new Error(`section ${t.section} of unit ${t.unit} is referenced but not kept`);
    return base + t.offset;
  };
  const dyn: DynReloc[] = [];
  const pc32 = (where: number, value: number, what: string) => {
    if (value < -0x80000000 || value > 0x7fffffff)
      throw new BundleError("ELINK", `${what}: a PC-relative reference is out of range`);
    image.writeInt32LE(value, where);
  };
  for (const k of input.sections) {
    const base = place.get(`${k.unit}:${k.section}`) as number;
    const unit = units[k.unit] as Unit;
    (unit.relocations.get(k.section) ?? []).forEach((r, i) => {
      const t = input.targets.get(relocationKey(k.unit, k.section, i)) as LinkTarget;
      const where = base + r.offset;
      switch (r.type) {
        case R.NONE:
          return;
        case R.R64:
          if (t.kind === "internal")
            dyn.push({ offset: where, type: R.RELATIVE, symbol: null, addend: addrOf(t) + r.addend });
          else dyn.push({ offset: where, type: R.R64, symbol: t.name, addend: t.offset + r.addend });
          return;
        case R.PC32:
        case R.PLT32:
          if (t.kind === "internal") {
            pc32(where, addrOf(t) + r.addend - where, unit.file);
            return;
          }
          if (r.type === R.PLT32 && t.call === "far") {
            pc32(where, stubsAt + 8 * (stubs.get(t.name) as number) + r.addend - where, unit.file);
            return;
          }
          dyn.push({ offset: where, type: R.PC32, symbol: t.name, addend: t.offset + r.addend });
          return;
        default: {
          const slot = gotAt + 8 * slotOf(t);
          pc32(where, slot + r.addend - where, unit.file);
          return;
        }
      }
    });
  }
  // Stubs: jmp *slot(%rip), padded with int3.
  for (const [name, n] of stubs) {
    const s = stubsAt + 8 * n;
    image[s] = 0xff;
    image[s + 1] = 0x25;
    image.writeInt32LE(gotAt + 8 * slotOf({ kind: "external", name, offset: 0, call: "far" }) - (s + 6), s + 2);
    image[s + 6] = 0xcc;
    image[s + 7] = 0xcc;
  }
  for (const [slot, t] of slotTargets) {
    const where = gotAt + 8 * slot;
    if (t.kind === "internal") dyn.push({ offset: where, type: R.RELATIVE, symbol: null, addend: addrOf(t) });
    else dyn.push({ offset: where, type: R.R64, symbol: t.name, addend: t.offset });
  }
  if (dyn.length !== dynCount) throw new Error(`dynamic relocation count ${dyn.length} != ${dynCount}`);

  // .dynsym
  const textIndex = 5; // section header index of .text (see below)
  symNames.forEach((n, i) => {
    const e = dynsymAt + 24 * (i + 1);
    image.writeUInt32LE(dynstr.add(n), e);
    image[e + 4] = (1 << 4) | 0; // STB_GLOBAL, STT_NOTYPE
  });
  input.exports.forEach((x, i) => {
    const e = dynsymAt + 24 * (1 + symNames.length + i);
    image.writeUInt32LE(dynstr.add(x.name), e);
    image[e + 4] = (1 << 4) | 2; // STB_GLOBAL, STT_FUNC
    image.writeUInt16LE(textIndex, e + 6);
    image.writeBigUInt64LE(BigInt((place.get(`${x.unit}:${x.section}`) as number) + x.value), e + 8);
    image.writeBigUInt64LE(BigInt(x.size), e + 16);
  });
  dynstr.bytes().copy(image, dynstrAt);
  dyn.forEach((d, i) => {
    const e = relaAt + 24 * i;
    const sym = d.symbol === null ? 0 : (symIndex.get(d.symbol) as number);
    image.writeBigUInt64LE(BigInt(d.offset), e);
    image.writeBigUInt64LE((BigInt(sym) << 32n) | BigInt(d.type), e + 8);
    image.writeBigInt64LE(BigInt(d.addend), e + 16);
  });

  // Section headers (after the image): null, .dynsym, .dynstr, .rela.dyn, .rodata, .text, .got, .shstrtab.
  const shstr = new StringTable();
  const shdrs: number[][] = [
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [shstr.add(".dynsym"), 11, 2, dynsymAt, dynsymAt, 24 * dynsymCount, 2, 1, 8, 24],
    [shstr.add(".dynstr"), 3, 2, dynstrAt, dynstrAt, dynstr.size, 0, 0, 1, 0],
    [shstr.add(".rela.dyn"), 4, 2, relaAt, relaAt, 24 * dynCount, 1, 0, 8, 24],
    [shstr.add(".rodata"), 1, 2, rodataAt, rodataAt, roEnd - rodataAt, 0, 0, 16, 0],
    [shstr.add(".text"), 1, 6, textAt, textAt, textEnd - textAt, 0, 0, 16, 0],
    [shstr.add(".got"), 1, 3, gotAt, gotAt, gotEnd - gotAt, 0, 0, 8, 8],
  ];
  const shstrName = shstr.add(".shstrtab");
  const shstrBytes = shstr.bytes();
  const shstrAt = fileEnd;
  shdrs.push([shstrName, 3, 0, 0, shstrAt, shstrBytes.length, 0, 0, 1, 0]);
  const shoff = align(shstrAt + shstrBytes.length, 8);
  const headers = Buffer.alloc(shoff - fileEnd + 64 * shdrs.length);
  shstrBytes.copy(headers, 0);
  shdrs.forEach((h, i) => {
    const e = shoff - fileEnd + 64 * i;
    const [name, type, flags, addr, off, size, link, info, al, ent] = h as number[];
    headers.writeUInt32LE(name as number, e);
    headers.writeUInt32LE(type as number, e + 4);
    headers.writeBigUInt64LE(BigInt(flags as number), e + 8);
    headers.writeBigUInt64LE(BigInt(addr as number), e + 16);
    headers.writeBigUInt64LE(BigInt(off as number), e + 24);
    headers.writeBigUInt64LE(BigInt(size as number), e + 32);
    headers.writeUInt32LE(link as number, e + 40);
    headers.writeUInt32LE(info as number, e + 44);
    headers.writeBigUInt64LE(BigInt(al as number), e + 48);
    headers.writeBigUInt64LE(BigInt(ent as number), e + 56);
  });

  // ELF header and program headers.
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(image, 0);
  image.writeUInt16LE(3, 16); // ET_DYN
  image.writeUInt16LE(62, 18); // EM_X86_64
  image.writeUInt32LE(1, 20);
  image.writeBigUInt64LE(64n, 32); // e_phoff
  image.writeBigUInt64LE(BigInt(shoff), 40);
  image.writeUInt16LE(64, 52);
  image.writeUInt16LE(56, 54);
  image.writeUInt16LE(PHNUM, 56);
  image.writeUInt16LE(64, 58);
  image.writeUInt16LE(shdrs.length, 60);
  image.writeUInt16LE(shdrs.length - 1, 62);
  const segments: [number, number, number][] = [
    [0, roEnd, 4], // R
    [textAt, textEnd - textAt, 5], // R X
    [gotAt, fileEnd - gotAt, 6], // R W
  ];
  segments.forEach(([start, size, flags], i) => {
    const e = 64 + 56 * i;
    image.writeUInt32LE(1, e); // PT_LOAD
    image.writeUInt32LE(flags, e + 4);
    image.writeBigUInt64LE(BigInt(start), e + 8);
    image.writeBigUInt64LE(BigInt(start), e + 16);
    image.writeBigUInt64LE(BigInt(start), e + 24);
    image.writeBigUInt64LE(BigInt(size), e + 32);
    image.writeBigUInt64LE(BigInt(size), e + 40);
    image.writeBigUInt64LE(BigInt(PAGE), e + 48);
  });
  return Buffer.concat([image, headers]);
}
