/**
 * The shared libraries an ELF file needs (DT_NEEDED, followed breadth-first like the dynamic
 * linker's global scope), found in its RUNPATH/RPATH and the system library directories, and the
 * names they export. Only `.dynamic` and `.dynstr` are read here, at offsets from the ELF reader.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { type ElfInfo, readElf } from "../native/index.js";

const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;
/** Most libraries followed from one file; real services need a few dozen. */
const MAX_LIBRARIES = 256;

const systemDirs = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib64",
  "/usr/lib64",
  "/lib",
  "/usr/lib",
  "/usr/local/lib",
];

/** The dynamic entries of an ELF file that say which libraries it needs and where to look. */
export interface DynamicDeps {
  /** DT_NEEDED names in order. */
  needed: string[];
  /** DT_RUNPATH, else DT_RPATH, directories with `$ORIGIN` expanded. */
  searchPath: string[];
}

function cString(table: Buffer, offset: number): string {
  const end = table.indexOf(0, offset);
  return table.toString("utf8", offset, end < 0 ? table.length : end);
}

/** Reads DT_NEEDED and the run path of an ELF file whose headers `elf` describes. */
export async function readDynamicDeps(elf: ElfInfo): Promise<DynamicDeps> {
  const dynamic = elf.sections.find((s) => s.name === ".dynamic");
  const dynstr = elf.sections.find((s) => s.name === ".dynstr");
  if (!dynamic || !dynstr || dynamic.size === 0n) return { needed: [], searchPath: [] };
  const file = await readFile(elf.path);
  const dyn = file.subarray(Number(dynamic.offset), Number(dynamic.offset + dynamic.size));
  const strings = file.subarray(Number(dynstr.offset), Number(dynstr.offset + dynstr.size));
  const needed: string[] = [];
  let runpath: string | null = null;
  let rpath: string | null = null;
  for (let at = 0; at + 16 <= dyn.length; at += 16) {
    const tag = dyn.readBigInt64LE(at);
    const value = Number(dyn.readBigUInt64LE(at + 8));
    if (tag === DT_NULL) break;
    if (value >= strings.length) continue;
    if (tag === DT_NEEDED) needed.push(cString(strings, value));
    else if (tag === DT_RUNPATH) runpath = cString(strings, value);
    else if (tag === DT_RPATH) rpath = cString(strings, value);
  }
  const origin = path.dirname(path.resolve(elf.path));
  const searchPath = (runpath ?? rpath ?? "")
    .split(":")
    .filter((d) => d !== "")
    .map((d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin));
  return { needed, searchPath };
}

async function ldSoConfDirs(): Promise<string[]> {
  const dirs: string[] = [];
  let files: string[] = [];
  try {
    files = (await readdir("/etc/ld.so.conf.d"))
      .filter((f) => f.endsWith(".conf"))
      .map((f) => `/etc/ld.so.conf.d/${f}`);
  } catch {
    // no ld.so.conf.d: the system directories remain
  }
  for (const f of files) {
    const text = await readFile(f, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      const d = line.trim();
      if (d.startsWith("/")) dirs.push(d);
    }
  }
  return dirs;
}

async function locate(name: string, dirs: string[]): Promise<ElfInfo | null> {
  const candidates = name.includes("/") ? [name] : dirs.map((d) => path.join(d, name));
  for (const candidate of candidates) {
    try {
      const info = await readElf(candidate);
      if (info.machine === 62 && info.bits === 64) return info;
    } catch {
      // not here (or not a usable ELF): try the next directory
    }
  }
  return null;
}

/** A library found for an ELF file. */
export interface NeededLibrary {
  /** The DT_NEEDED name. */
  name: string;
  /** The file found for it, or null when none was found. */
  elf: ElfInfo | null;
}

/** Every library `elf` needs, directly or through other libraries, breadth-first. */
export async function neededLibraries(elf: ElfInfo): Promise<NeededLibrary[]> {
  const systemSearch = [...(await ldSoConfDirs()), ...systemDirs];
  const seen = new Set<string>();
  const out: NeededLibrary[] = [];
  const queue: { from: ElfInfo; name: string; searchPath: string[] }[] = [];
  const enqueue = async (from: ElfInfo) => {
    const deps = await readDynamicDeps(from);
    for (const name of deps.needed) queue.push({ from, name, searchPath: deps.searchPath });
  };
  await enqueue(elf);
  while (queue.length > 0 && out.length < MAX_LIBRARIES) {
    const next = queue.shift();
    if (!next || seen.has(next.name)) continue;
    seen.add(next.name);
    const lib = await locate(next.name, [...next.searchPath, ...systemSearch]);
    out.push({ name: next.name, elf: lib });
    if (lib) await enqueue(lib);
  }
  return out;
}

/** Strips a symbol version suffix (`memcpy@GLIBC_2.14`, `foo@@V1`). */
export function baseName(symbol: string): string {
  const at = symbol.indexOf("@");
  return at < 0 ? symbol : symbol.slice(0, at);
}
