/** Loads the compiled addon. Only this file knows where node-gyp put it. */
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ApplyOutcome, PatchRecord, PatchSpec } from "./engine_types.js";

/** Raw shapes as the addon returns them, before the TypeScript face names the numbers. */
export interface RawElfInfo {
  path: string;
  type: number;
  machine: number;
  elfClass: number;
  entry: bigint;
  buildId: string | null;
  debugLink: string | null;
  programHeaders: {
    type: number;
    flags: number;
    offset: bigint;
    vaddr: bigint;
    filesz: bigint;
    memsz: bigint;
    align: bigint;
  }[];
  sections: { name: string; type: number; flags: bigint; addr: bigint; offset: bigint; size: bigint }[];
  symbols: {
    name: string;
    value: bigint;
    size: bigint;
    type: number;
    bind: number;
    shndx: number;
    table: "symtab" | "dynsym";
    file?: string;
  }[];
}

export interface RawMapping {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  dev: string;
  inode: number;
  path: string;
}

export interface RawTargetObjects {
  objects: {
    path: string;
    disk: "same" | "replaced" | "deleted";
    source: string;
    buildId: string | null;
    start: bigint;
    end: bigint;
    bias: bigint;
    executable: boolean;
    linkMapIndex: number | null;
    unreadable?: string;
  }[];
  linkMap: boolean;
  reason: string;
}

/** A relocatable object as the addon reads it (see native/object.ts for the field meanings). */
export interface RawObjectFile {
  path: string;
  sections: {
    name: string;
    type: number;
    flags: number;
    size: number;
    align: number;
    entsize: number;
    link: number;
    info: number;
    bytes: Buffer;
  }[];
  symbols: {
    name: string;
    value: number;
    size: number;
    type: number;
    bind: number;
    visibility: number;
    shndx: number;
  }[];
  relocations: { section: number; offset: number; type: number; symbol: number; addend: number }[];
}

/** Result of a patch operation as the addon returns it. */
export interface RawOpResult {
  patch: PatchRecord;
  pauseUs: number;
  attempts: number;
}

/** Options every patch operation takes. */
export interface RawOpOptions {
  safetyTimeoutMs?: number;
  placement?: "near" | "far";
  debugDirs?: string[];
  cancel?: Int32Array;
}

/** The functions the addon exports. */
export interface NativeAddon {
  readElf(path: string): Promise<RawElfInfo>;
  readBuildId(path: string): Promise<string | null>;
  readObject(path: string): Promise<RawObjectFile>;
  readMaps(pid: number): Promise<RawMapping[]>;
  readTargetObjects(pid: number): Promise<RawTargetObjects>;
  loadPatch(pid: number, spec: PatchSpec, opts: RawOpOptions): Promise<RawOpResult>;
  applyBatch(pids: number[], spec: PatchSpec, opts: RawOpOptions & { parallel?: number }): Promise<ApplyOutcome[]>;
  activatePatch(pid: number, id: string, opts: RawOpOptions): Promise<RawOpResult>;
  deactivatePatch(pid: number, id: string, opts: RawOpOptions): Promise<RawOpResult>;
  unloadPatch(pid: number, id: string, opts: RawOpOptions): Promise<RawOpResult>;
  listPatches(pid: number): Promise<PatchRecord[]>;
  stopResume(pid: number): Promise<number>;
}

// The addon sits in native/build whether this file runs from source (native/) or from dist/native/.
function addonPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = path.basename(path.dirname(here)) === "dist" ? path.resolve(here, "../..") : path.resolve(here, "..");
  return path.join(root, "native/build/Release/hotpatch_native.node");
}

const require = createRequire(import.meta.url);

/** The loaded addon; loading once per process is enough, since the module is immutable. */
export const addon: NativeAddon = require(addonPath()) as NativeAddon;
