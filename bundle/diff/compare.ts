/**
 * Comparing the original and patched builds of one translation unit item by item: which
 * functions changed (and why), which are new, which changed only in `__LINE__` values, and
 * whether any data changed (refused: a live patch cannot carry new state).
 */
import { BundleError } from "../errors.js";
import {
  type Item,
  isCold,
  itemSignature,
  maskedBytes,
  parentKey,
  SHF_ALLOC,
  SHF_WRITE,
  type Unit,
} from "./object_model.js";

/** Why a function is in the patch. */
export type ChangeReason = "edited" | "inlined" | "new" | "clone" | "cold-part";

/** A function of the patched build that goes into the patch. */
export interface ChangedFunction {
  /** The item in the patched object. */
  patched: Item;
  /** Its counterpart in the original object; null for a new function. */
  original: Item | null;
  reason: ChangeReason;
  /** Set for a `.cold` part or a clone: the function it belongs to. */
  of?: string;
}

export interface UnitComparison {
  /** Functions whose code changed, new functions, and the `.cold` parts of either. */
  changed: ChangedFunction[];
  /** Functions whose code differs only in `__LINE__` values (not patched unless asked). */
  lineOnly: Item[];
}

const CLONE = /\.(constprop|isra|part|lto_priv)$/;

function changedData(item: Item, why: string, file: string): BundleError {
  return new BundleError(
    "EDATA_CHANGED",
    `${file}: ${item.local ? "static" : "global"} ${item.name} ${why}; a live patch uses the running program's data and cannot bring new or changed data (restart the program to change it)`,
    { symbol: item.name, path: file },
  );
}

/** Data of the patched build: every writable or TLS object must be the original's, unchanged. */
function checkData(original: Unit, patched: Unit): void {
  for (const item of patched.items) {
    if (item.kind !== "object") continue;
    const sec = patched.object.sections[item.section];
    if (!sec || (sec.flags & SHF_ALLOC) === 0) continue;
    const mutable = (sec.flags & SHF_WRITE) !== 0 || item.tls;
    const before = original.byKey.get(item.key);
    if (!before) {
      if (mutable) throw changedData(item, "is new", patched.file);
      continue; // a new constant is patch code
    }
    if (!mutable) continue; // a changed constant travels with the patch
    if (before.size !== item.size) {
      throw changedData(item, `changed size from ${before.size} to ${item.size} bytes`, patched.file);
    }
    if (before.tls !== item.tls) throw changedData(item, "changed between thread-local and shared", patched.file);
    if (itemSignature(original, before) !== itemSignature(patched, item)) {
      throw changedData(item, "has a new initial value", patched.file);
    }
  }
}

/**
 * Whether two functions differ only in 4-byte immediates that are line numbers moved by the diff:
 * `lines(old)` gives the new number of an old line (null: that line was changed).
 */
function onlyLineNumbers(
  original: Unit,
  before: Item,
  patched: Unit,
  after: Item,
  lines: ((old: number) => number | null)[],
): boolean {
  if (before.size !== after.size || lines.length === 0) return false;
  const a = maskedBytes(original, before);
  const b = maskedBytes(patched, after);
  let i = 0;
  let sawLine = false;
  while (i < a.bytes.length) {
    if (a.bytes[i] === b.bytes[i] || a.mask[i] || b.mask[i]) {
      i++;
      continue;
    }
    // The differing byte must sit inside a 32-bit immediate holding a moved line number.
    let matched = false;
    for (let start = Math.max(0, i - 3); start <= i && start + 4 <= a.bytes.length; start++) {
      const va = a.bytes.readUInt32LE(start);
      const vb = b.bytes.readUInt32LE(start);
      if (va > 0 && va < 1_000_000 && lines.some((map) => map(va) === vb)) {
        matched = true;
        i = start + 4;
        break;
      }
    }
    if (!matched) return false;
    sawLine = true;
  }
  // Relocations must be the same apart from that.
  const relocs = (u: Unit, it: Item) =>
    (u.relocations.get(it.section) ?? []).filter((r) => r.offset >= it.value && r.offset < it.value + it.size).length;
  return sawLine && relocs(original, before) === relocs(patched, after);
}

/** Compares one unit's two builds. `edited` names the functions the diff's hunks name or touch. */
export function compareUnits(
  original: Unit,
  patched: Unit,
  edited: (name: string) => boolean,
  lines: ((old: number) => number | null)[],
): UnitComparison {
  checkData(original, patched);
  const changed: ChangedFunction[] = [];
  const lineOnly: Item[] = [];
  const changedKeys = new Set<string>();
  const functions = patched.items.filter((i) => i.kind === "function");
  for (const item of functions) {
    const before = original.byKey.get(item.key);
    if (before?.kind !== "function") {
      changedKeys.add(item.key);
      continue;
    }
    if (itemSignature(original, before) === itemSignature(patched, item)) continue;
    if (onlyLineNumbers(original, before, patched, item, lines)) {
      lineOnly.push(item);
      continue;
    }
    changedKeys.add(item.key);
  }
  // A changed .cold part means its function changed; a changed function takes its .cold part along.
  for (const item of functions) if (isCold(item) && changedKeys.has(item.key)) changedKeys.add(parentKey(item.key));
  for (const item of functions) {
    const before = original.byKey.get(item.key) ?? null;
    if (isCold(item)) {
      if (changedKeys.has(parentKey(item.key))) {
        changed.push({ patched: item, original: before, reason: "cold-part", of: parentKey(item.name) });
      }
      continue;
    }
    if (!changedKeys.has(item.key)) continue;
    const base = item.key.replace(CLONE, "");
    const reason: ChangeReason = !before
      ? "new"
      : base !== item.key
        ? "clone"
        : edited(item.name)
          ? "edited"
          : "inlined";
    changed.push({
      patched: item,
      original: before,
      reason,
      ...(reason === "clone" ? { of: item.name.replace(/\.(constprop|isra|part|lto_priv)(\.\d+)*$/, "") } : {}),
    });
  }
  return { changed, lineOnly };
}
