/** Reading ELF files and process mappings, with names instead of raw ELF numbers. */
import { addon, type RawElfInfo } from "./binding.js";
import { EngineError } from "./errors.js";
import type {
  ElfInfo,
  ElfSymbol,
  ElfType,
  MappedObject,
  Mapping,
  SymbolBinding,
  SymbolKind,
  TargetObjects,
} from "./types.js";

const elfTypes: Record<number, ElfType> = { 1: "relocatable", 2: "executable", 3: "shared", 4: "core" };
const symbolKinds: Record<number, SymbolKind> = { 0: "notype", 1: "object", 2: "function", 6: "tls", 10: "ifunc" };
const bindings: Record<number, SymbolBinding> = { 0: "local", 1: "global", 2: "weak", 10: "global" };
const SHN_UNDEF = 0;

function toSymbol(raw: RawElfInfo["symbols"][number]): ElfSymbol {
  const symbol: ElfSymbol = {
    name: raw.name,
    value: raw.value,
    size: raw.size,
    kind: symbolKinds[raw.type] ?? "other",
    binding: bindings[raw.bind] ?? "other",
    defined: raw.shndx !== SHN_UNDEF,
    table: raw.table,
  };
  if (raw.file !== undefined) symbol.file = raw.file;
  return symbol;
}

/** Reads an ELF file's type, build-id, program headers, sections and symbols (`.symtab` and `.dynsym`). */
export async function readElf(path: string): Promise<ElfInfo> {
  let raw: RawElfInfo;
  try {
    raw = await addon.readElf(path);
  } catch (err) {
    throw EngineError.from(err, { path });
  }
  return {
    path: raw.path,
    type: elfTypes[raw.type] ?? "unknown",
    machine: raw.machine,
    bits: raw.elfClass === 1 ? 32 : 64,
    entry: raw.entry,
    buildId: raw.buildId,
    debugLink: raw.debugLink,
    programHeaders: raw.programHeaders,
    sections: raw.sections,
    symbols: raw.symbols.map(toSymbol),
  };
}

/**
 * Reads only an ELF file's build-id (lowercase hex, as `readElf` gives it), or null when it has
 * none: it reads the notes and nothing else, so it takes microseconds where `readElf` of a big
 * program (node's 180,000 symbols) takes seconds.
 */
export async function readBuildId(path: string): Promise<string | null> {
  try {
    return await addon.readBuildId(path);
  } catch (err) {
    throw EngineError.from(err, { path });
  }
}

/** Reads the mappings of a live process from `/proc/PID/maps`. */
export async function readMaps(pid: number): Promise<Mapping[]> {
  try {
    return await addon.readMaps(pid);
  } catch (err) {
    throw EngineError.from(err, { pid });
  }
}

/**
 * The ELF objects a process has mapped, in the order the engine searches them for a patch's
 * undefined symbols (the dynamic linker's order when it can be read), each read as mapped: a file
 * replaced or deleted on disk since the process started is read through the mapping itself.
 */
export async function readTargetObjects(pid: number): Promise<TargetObjects> {
  try {
    const raw = await addon.readTargetObjects(pid);
    return {
      objects: raw.objects.map((o): MappedObject => ({ ...o })),
      searchOrder: raw.linkMap ? { source: "link_map" } : { source: "maps", reason: raw.reason },
    };
  } catch (err) {
    throw EngineError.from(err, { pid });
  }
}
