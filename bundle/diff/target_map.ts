/**
 * The target binary seen from one translation unit: which of its symbols are that unit's statics
 * (the run of local symbols after the unit's STT_FILE entry that matches the rebuilt original
 * best), its globals, an anchor symbol for target-relative references, and the proof that the
 * rebuilt original is what runs (each function's bytes, relocated fields aside).
 */
import { execFile } from "node:child_process";
import type { ElfInfo, ElfSymbol } from "../../native/index.js";
import { BundleError } from "../errors.js";
import { type Item, maskedBytes, type Unit } from "./object_model.js";

/** A target symbol: its link-time address and size. */
export interface TargetSymbol {
  name: string;
  value: bigint;
  size: bigint;
  local: boolean;
}

/** The target's view of one unit. */
export interface TargetUnit {
  /** The unit's local symbols in the target, by name. */
  locals: Map<string, TargetSymbol>;
  /** Finds a defined global of the target by name. */
  global(name: string): TargetSymbol | undefined;
}

/** The whole target, read once. */
export interface TargetMap {
  elf: ElfInfo;
  bytes: Buffer;
  kind: "executable" | "library";
  /** The symbol target-relative references are anchored to. */
  anchor: TargetSymbol;
  groups: { file: string; symbols: ElfSymbol[] }[];
  globals: Map<string, TargetSymbol>;
}

const toTarget = (s: ElfSymbol): TargetSymbol => ({
  name: s.name,
  value: s.value,
  size: s.size,
  local: s.binding === "local",
});

/** Indexes the target; `kind` decides which symbols can anchor (a library's must be exported). */
export function mapTarget(elf: ElfInfo, bytes: Buffer, kind: "executable" | "library"): TargetMap {
  const groups: { file: string; symbols: ElfSymbol[] }[] = [];
  const globals = new Map<string, TargetSymbol>();
  for (const s of elf.symbols) {
    if (!s.defined || s.value === 0n) continue;
    if (s.binding === "local" && s.table === "symtab") {
      const file = s.file ?? "";
      const last = groups.at(-1);
      if (last && last.file === file) last.symbols.push(s);
      else groups.push({ file, symbols: [s] });
    } else if (s.binding !== "local" && !globals.has(s.name)) {
      globals.set(s.name, toTarget(s));
    }
  }
  const exported = elf.symbols.filter(
    (s) => s.table === "dynsym" && s.defined && s.binding === "global" && s.kind === "function" && s.value !== 0n,
  );
  const candidates =
    kind === "library"
      ? exported
      : elf.symbols.filter(
          (s) =>
            s.defined && s.binding === "global" && s.value !== 0n && (s.kind === "function" || s.kind === "object"),
        );
  const anchor = candidates.find((s) => s.name === "main") ?? candidates[0];
  if (!anchor) {
    throw new BundleError(
      "EBAD_TARGET",
      `${elf.path} defines no ${kind === "library" ? "exported function" : "global symbol"} that a patch's references could be anchored to`,
      { path: elf.path },
    );
  }
  return { elf, bytes, kind, anchor: toTarget(anchor), groups, globals };
}

/** The bytes of a target symbol, read from the file through the section that holds it. */
export function targetBytes(target: TargetMap, value: bigint, size: number): Buffer | null {
  const sec = target.elf.sections.find(
    (s) => s.type !== 8 && value >= s.addr && value + BigInt(size) <= s.addr + s.size && s.addr !== 0n,
  );
  if (!sec) return null;
  const off = Number(sec.offset + (value - sec.addr));
  return target.bytes.subarray(off, off + size);
}

/** Chooses the target's symbol group for a unit: same file name, most local functions of the same size. */
export function unitInTarget(target: TargetMap, original: Unit): TargetUnit {
  const localFns = original.items.filter((i) => i.local);
  let best: { file: string; symbols: ElfSymbol[] } | undefined;
  let bestScore = -1;
  for (const g of target.groups) {
    if (g.file !== original.file) continue;
    const names = new Map(g.symbols.map((s) => [s.name, s]));
    const score = localFns.filter((i) => names.get(i.name)?.size === BigInt(i.size)).length;
    if (score > bestScore) {
      best = g;
      bestScore = score;
    }
  }
  const locals = new Map<string, TargetSymbol>();
  for (const s of best?.symbols ?? []) if (!locals.has(s.name)) locals.set(s.name, toTarget(s));
  return { locals, global: (name) => target.globals.get(name) };
}

/** The target symbol of an original item: a static from its unit's group, a global by name. */
export function targetSymbolOf(unit: TargetUnit, item: Item): TargetSymbol | undefined {
  return item.local ? unit.locals.get(item.name) : unit.global(item.name);
}

function disassemble(file: string, start: bigint, length: number): Promise<string[]> {
  return new Promise((resolve) => {
    execFile(
      "objdump",
      [
        "-d",
        "--no-show-raw-insn",
        `--start-address=0x${start.toString(16)}`,
        `--stop-address=0x${(start + BigInt(length)).toString(16)}`,
        file,
      ],
      { maxBuffer: 1024 * 1024 },
      (err, stdout) => resolve(err ? [] : stdout.split("\n").filter((l) => /^\s+[0-9a-f]+:\t/.test(l))),
    );
  });
}

/** The instruction of `file` (objdump's text, for the message only) that holds address `at`. */
async function instructionAt(file: string, fnStart: bigint, at: bigint, size: number): Promise<string> {
  const lines = await disassemble(file, fnStart, size);
  let found = "";
  for (const l of lines) {
    const addr = BigInt(`0x${l.trim().split(":")[0] as string}`);
    if (addr > at) break;
    found = l.split("\t").slice(1).join(" ").trim();
  }
  return found || "(no disassembly)";
}

/**
 * EBUILD_MISMATCH unless every function of the rebuilt original that the target also has is
 * byte-for-byte the target's (relocated fields aside) and of the same size.
 */
export async function proveSameBuild(
  target: TargetMap,
  original: Unit,
  unit: TargetUnit,
  functions: Item[],
): Promise<number> {
  let compared = 0;
  for (const item of functions) {
    const t = targetSymbolOf(unit, item);
    if (!t) continue;
    const mismatch = (why: string) =>
      new BundleError(
        "EBUILD_MISMATCH",
        `the rebuilt original of ${original.file} is not the running binary: ${item.name} ${why}; build the patch from the exact tree, compiler and flags that built ${target.elf.path}`,
        { path: target.elf.path, symbol: item.name },
      );
    if (t.size !== BigInt(item.size)) throw mismatch(`is ${t.size} bytes in the target and ${item.size} rebuilt`);
    const theirs = targetBytes(target, t.value, item.size);
    if (!theirs) throw mismatch("has no bytes in the target's sections");
    const { bytes, mask } = maskedBytes(original, item);
    for (let i = 0; i < bytes.length; i++) {
      if (mask[i] || bytes[i] === theirs[i]) continue;
      const at = t.value + BigInt(i);
      const insn = await instructionAt(target.elf.path, t.value, at, item.size);
      throw mismatch(
        `differs at +0x${i.toString(16)} (target instruction \`${insn}\`, byte 0x${(theirs[i] as number).toString(16)} where the rebuild has 0x${(bytes[i] as number).toString(16)})`,
      );
    }
    compared++;
  }
  return compared;
}
