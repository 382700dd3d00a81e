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
