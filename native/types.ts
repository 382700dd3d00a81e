/**
 * Pure types of the native engine's TypeScript face. Addresses and file offsets are `bigint`:
 * x86-64 addresses (the `[vsyscall]` page, absolute symbols) do not all fit in a double.
 */

/** ELF `e_type` values that matter to hotpatch. */
export type ElfType = "relocatable" | "executable" | "shared" | "core" | "unknown";

/** One ELF program header (segment). */
export interface ElfProgramHeader {
  /** `p_type` (PT_LOAD = 1, PT_DYNAMIC = 2, PT_NOTE = 4, ...). */
  type: number;
  /** `p_flags`: PF_X = 1, PF_W = 2, PF_R = 4. */
  flags: number;
  /** Offset of the segment in the file. */
  offset: bigint;
  /** Virtual address of the segment, relative to the load base for a PIE or shared object. */
  vaddr: bigint;
  /** Bytes of the segment present in the file. */
  filesz: bigint;
  /** Bytes of the segment in memory (larger than `filesz` for `.bss`). */
  memsz: bigint;
  /** Alignment of the segment. */
  align: bigint;
}

/** One ELF section header. */
export interface ElfSection {
  /** Section name, e.g. `.text`. */
  name: string;
  /** `sh_type` (SHT_PROGBITS = 1, SHT_SYMTAB = 2, SHT_NOBITS = 8, ...). */
  type: number;
  /** `sh_flags`. */
  flags: bigint;
  /** Address of the section in memory (0 when not loaded). */
  addr: bigint;
  /** Offset of the section in the file. */
  offset: bigint;
  /** Size of the section in bytes. */
  size: bigint;
}

/** Symbol kinds hotpatch distinguishes (`STT_*`). */
export type SymbolKind = "function" | "object" | "tls" | "ifunc" | "notype" | "other";

/** Symbol binding (`STB_*`). */
export type SymbolBinding = "local" | "global" | "weak" | "other";

/** One symbol of `.symtab` or `.dynsym`. */
export interface ElfSymbol {
  /** Symbol name, as written (C++ names are mangled). */
  name: string;
  /** `st_value`: address relative to the load base of a PIE or shared object. */
  value: bigint;
  /** `st_size` in bytes (0 when unknown). */
  size: bigint;
  /** What the symbol names. */
  kind: SymbolKind;
  /** Whether the symbol is visible outside its file. */
  binding: SymbolBinding;
  /** False for an undefined symbol (a reference to be resolved elsewhere). */
  defined: boolean;
  /** The table the symbol came from. */
  table: "symtab" | "dynsym";
  /** For a local (static) symbol: the source file that defines it, when the table says. */
  file?: string;
}

/** What hotpatch knows about one ELF file. */
export interface ElfInfo {
  /** Path the file was read from. */
  path: string;
  /** Object type: an executable (non-PIE), a shared object (also PIE executables), ... */
  type: ElfType;
  /** `e_machine`: 62 is x86-64. */
  machine: number;
  /** 64 or 32. */
  bits: 64 | 32;
  /** Entry point address. */
  entry: bigint;
  /** GNU build-id as lowercase hex, or null when the file has none. */
  buildId: string | null;
  /** File name in `.gnu_debuglink`, or null. */
  debugLink: string | null;
  /** Program headers in file order. */
  programHeaders: ElfProgramHeader[];
  /** Section headers in file order (empty for a file without them). */
  sections: ElfSection[];
  /** Symbols of `.symtab` then `.dynsym`, without the null symbol, section and file symbols. */
  symbols: ElfSymbol[];
}

/** One line of `/proc/PID/maps`. */
export interface Mapping {
  /** First address of the mapping. */
  start: bigint;
  /** One past the last address of the mapping. */
  end: bigint;
  /** Permissions as the kernel prints them, e.g. `r-xp`. */
  perms: string;
  /** Offset into the mapped file. */
  offset: bigint;
  /** Device of the mapped file, `major:minor`. */
  dev: string;
  /** Inode of the mapped file, 0 for anonymous memory. */
  inode: number;
  /** Path of the mapped file, a pseudo-path such as `[heap]`, or "" for anonymous memory. */
  path: string;
}

/** How the file now at a mapped object's path relates to the object the process has mapped. */
export type OnDisk =
  /** The same file (or, when that cannot be checked, a file of the same build-id). */
  | "same"
  /** Another file is there now (a package upgrade renamed a new build over it). */
  | "replaced"
  /** Nothing is there any more. */
  | "deleted";

/** An ELF object a process has mapped, as the engine reads it (the mapped file, never a newer one). */
export interface MappedObject {
  /** Path as the target sees it, without the kernel's " (deleted)". */
  path: string;
  /** Whether the file at `path` is still the one mapped. */
  disk: OnDisk;
  /** The file that was read: `/proc/PID/exe`, `/proc/PID/map_files/…`, or the path through `/proc/PID/root`. */
  source: string;
  /** Build-id of the mapped object itself, or null (none, or unreadable). */
  buildId: string | null;
  /** First address of its mappings. */
  start: bigint;
  /** One past the last address of its mappings. */
  end: bigint;
  /** Load bias: add to a symbol value to get its address. */
  bias: bigint;
  /** The main program. */
  executable: boolean;
  /** Its place in the dynamic linker's list of objects, or null when ld.so does not list it. */
  linkMapIndex: number | null;
  /** Why the mapped file could not be read, when it could not. */
  unreadable?: string;
}

/** Where the order of libraries searched for a patch's undefined symbols comes from. */
export type SearchOrder =
  /** The dynamic linker's own list (r_debug's link_map chain): interposition as in the target. */
  | { source: "link_map" }
  /** Address order, because the list could not be read (`reason`, e.g. a static program). */
  | { source: "maps"; reason: string };

/** The objects of a process in the order the engine searches them. */
export interface TargetObjects {
  /** The executable first, then the libraries in search order, then objects ld.so does not list. */
  objects: MappedObject[];
  /** Where the libraries' order comes from. */
  searchOrder: SearchOrder;
}
