/** Finding local processes to patch: by pid, every process of one executable, or of one library. */
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { mapsDevice, sharesOurMounts } from "../common/index.js";
import { type MappedObject, readTargetObjects } from "../native/index.js";

async function allPids(): Promise<number[]> {
  return (await readdir("/proc"))
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => p !== process.pid);
}

/** Pids of every process whose `/proc/PID/exe` is the same file (device and inode) as `exePath`. */
export async function pidsOfExecutable(exePath: string): Promise<number[]> {
  const wanted = await stat(exePath);
  const found: number[] = [];
  await Promise.all(
    (await allPids()).map(async (pid) => {
      // stat follows the magic link to the real file, also across mount namespaces.
      const s = await stat(`/proc/${pid}/exe`).catch(() => null);
      if (s && s.dev === wanted.dev && s.ino === wanted.ino) found.push(pid);
    }),
  );
  return found.sort((a, b) => a - b);
}

/** The kernel's suffix on a mapped file's path once the file was deleted or renamed over. */
const deletedSuffix = " (deleted)";

/** What a `--lib PATH` names: the file there now (if any) and the path itself. */
interface LibraryName {
  /** The path with symlinks resolved, as /proc/PID/maps would show it. */
  path: string;
  /** Device and inode of the file at the path now, or null when there is none. */
  file: { dev: number; ino: number } | null;
}

async function libraryName(libPath: string): Promise<LibraryName> {
  const [real, s] = await Promise.all([
    realpath(libPath).catch(() => path.resolve(libPath)),
    stat(libPath).catch(() => null),
  ]);
  return { path: real, file: s ? { dev: s.dev, ino: s.ino } : null };
}

/**
 * Paths (as the process sees them, without " (deleted)") under which process `pid` maps the library
 * `lib`: the very file there now (device and inode as the maps show them), or, for a process of our
 * own mount namespace, whatever it still maps under that path after the file there was replaced or
 * deleted. A process in another mount namespace (a container) names its own files: its /x is ours
 * only when it is the same file.
 */
async function pathsMapping(pid: number, lib: LibraryName): Promise<string[]> {
  const maps = await readFile(`/proc/${pid}/maps`, "utf8").catch(() => "");
  const found = new Set<string>();
  let ourMounts: boolean | undefined;
  for (const line of maps.split("\n")) {
    // Columns: range perms offset dev inode path; the path may hold spaces.
    const m = /^\S+ \S+ \S+ (\S+) (\d+)\s+(\/.*)$/.exec(line);
    if (!m?.[1] || !m[2] || !m[3]) continue;
    const p = m[3].endsWith(deletedSuffix) ? m[3].slice(0, -deletedSuffix.length) : m[3];
    if (found.has(p)) continue;
    if (lib.file && mapsDevice(m[1]) === lib.file.dev && Number(m[2]) === lib.file.ino) {
      found.add(p);
    } else if (p === lib.path) {
      ourMounts ??= await sharesOurMounts(pid);
      if (ourMounts) found.add(p);
    }
  }
  return [...found];
}

/**
 * Pids of every process that maps the library at `libPath`: the file there now, or an older build
 * it still maps under that path (replaced or deleted on disk since it started).
 */
export async function pidsMappingLibrary(libPath: string): Promise<number[]> {
  const lib = await libraryName(libPath);
  const found: number[] = [];
  await Promise.all(
    (await allPids()).map(async (pid) => {
      if ((await pathsMapping(pid, lib)).length > 0) found.push(pid);
    }),
  );
  return found.sort((a, b) => a - b);
}

/**
 * The objects process `pid` maps under the library path `libPath`, each with the build-id of what
 * is mapped (read through the mapping, not from the file now at the path).
 */
export async function mappedLibrary(pid: number, libPath: string): Promise<MappedObject[]> {
  const paths = await pathsMapping(pid, await libraryName(libPath));
  if (paths.length === 0) return [];
  const { objects } = await readTargetObjects(pid);
  return objects.filter((o) => !o.executable && paths.includes(o.path));
}

/** The libraries (not the executable) that process `pid` maps, as mapped: to find one by build-id. */
export async function mappedLibraries(pid: number): Promise<MappedObject[]> {
  const { objects } = await readTargetObjects(pid);
  return objects.filter((o) => !o.executable);
}

/** Groups pids by the file their `/proc/PID/exe` is, so that each executable is read once. */
export async function groupByExecutable(pids: number[]): Promise<Map<string, number[]>> {
  const groups = new Map<string, number[]>();
  for (const pid of pids) {
    const s = await stat(`/proc/${pid}/exe`).catch(() => null);
    const key = s ? `${s.dev}:${s.ino}` : `gone:${pid}`;
    groups.set(key, [...(groups.get(key) ?? []), pid]);
  }
  return groups;
}
