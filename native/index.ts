/** Public face of the native engine. */
export { readBuildId, readElf, readMaps, readTargetObjects } from "./elf.js";
export {
  activatePatch,
  applyPatch,
  applyPatchToMany,
  deactivatePatch,
  listPatches,
  loadPatch,
  measureStopFloor,
  revertPatch,
  unloadPatch,
} from "./engine.js";
export type {
  ApplyOutcome,
  Consistency,
  OpOptions,
  OpResult,
  PatchedFunction,
  PatchFunctionSpec,
  PatchRecord,
  PatchSpec,
  PatchState,
} from "./engine_types.js";
export { EngineError, type EngineErrorCode, type EngineErrorContext, engineErrorCodes } from "./errors.js";
export { type ObjectFile, type ObjectRelocation, type ObjectSection, type ObjectSymbol, readObject } from "./object.js";
export { type ExecEvent, type ExecWatcher, monotonicMs, watchExecs } from "./proc_events.js";
export type {
  ElfInfo,
  ElfProgramHeader,
  ElfSection,
  ElfSymbol,
  ElfType,
  MappedObject,
  Mapping,
  OnDisk,
  SearchOrder,
  SymbolBinding,
  SymbolKind,
  TargetObjects,
} from "./types.js";
