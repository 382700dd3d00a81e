/** Public face of the native engine. */
export { readElf, readMaps } from "./elf.js";
export { EngineError, type EngineErrorCode, type EngineErrorContext } from "./errors.js";
export { type ExecEvent, type ExecWatcher, monotonicMs, watchExecs } from "./proc_events.js";
export type {
  ElfInfo,
  ElfProgramHeader,
  ElfSection,
  ElfSymbol,
  ElfType,
  Mapping,
  SymbolBinding,
  SymbolKind,
} from "./types.js";
