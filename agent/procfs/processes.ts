/** Finds processes in /proc and matches them against selectors. Reads only; never touches a process. */
import { readdir, readFile, readlink, realpath, stat } from "node:fs/promises";
import { readBuildId, readMaps } from "../../native/index.js";
import { AgentError } from "../errors.js";
import type { ProcessFacts, Selector } from "./types.js";

/** Field 22 of /proc/PID/stat; the command name (field 2) may hold spaces and parentheses. */
export function parseStartTime(stat: string): number {
  const afterComm = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // afterComm[0] is field 3 (state), so field 22 is at index 19.
  const v = Number(afterComm[19]);
  if (!Number.isFinite(v)) throw new Error(`cannot parse /proc/PID/stat: ${stat.slice(0, 80)}`);
  return v;
}

/** Start time of a process, or null when it is gone. */
export async function readStartTime(pid: number): Promise<number | null> {
  try {
    return parseStartTime(await readFile(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

function parseCgroup(text: string): string {
  const lines = text.split("\n").filter(Boolean);
  const v2 = lines.find((l) => l.startsWith("0::"));
  const line = v2 ?? lines[0] ?? "";
  return line.slice(line.indexOf(":", line.indexOf(":") + 1) + 1);
}

/** Reads one process's facts, or null when it is gone, a kernel thread, or not readable. */
export async function readProcess(pid: number): Promise<ProcessFacts | null> {
  try {
    const [exe, statText, cg] = await Promise.all([
      readlink(`/proc/${pid}/exe`),
      readFile(`/proc/${pid}/stat`, "utf8"),
      readFile(`/proc/${pid}/cgroup`, "utf8"),
    ]);
    return {
      pid,
      exePath: exe.replace(/ \(deleted\)$/, ""),
      startTime: parseStartTime(statText),
      cgroup: parseCgroup(cg),
    };
  } catch {
    return null;
  }
}

/** Every process id in /proc (this agent's PID namespace). */
export async function listPids(): Promise<number[]> {
  const names = await readdir("/proc");
  return names.filter((n) => /^\d+$/.test(n)).map(Number);
}

/** Pids of the processes whose command line (argv) satisfies `match`; one gone meanwhile is skipped. */
export async function findByCommandLine(match: (argv: string[]) => boolean): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await listPids()) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline !== "" && match(cmdline.split("\0"))) out.push(pid);
  }
  return out;
}

/** Build-ids by file identity (device, inode, mtime), so each executable is read once. */
export class BuildIdCache {
  private readonly byFile = new Map<string, string | null>();

  /** Build-id of a process's executable (read through /proc/PID/exe, so container paths work), or null. */
  forProcess(pid: number): Promise<string | null> {
    return this.forFile(`/proc/${pid}/exe`);
  }

  /** Build-id of an ELF file, or null when it has none or cannot be read. */
  async forFile(exe: string): Promise<string | null> {
    let key: string;
    try {
      const s = await stat(exe);
      key = `${s.dev}:${s.ino}:${s.mtimeMs}`;
    } catch {
      return null;
    }
    const known = this.byFile.get(key);
    if (known !== undefined) return known;
    let id: string | null = null;
    try {
      id = await readBuildId(exe);
    } catch {
      id = null;
    }
    if (this.byFile.size > 4096) this.byFile.clear();
    this.byFile.set(key, id);
    return id;
  }
}

/** Throws EBAD_ARGUMENT for a selector that could not mean anything precise. */
export function checkSelector(sel: Selector): void {
  const given = Object.entries(sel).filter(([, v]) => v !== undefined && v !== "" && v !== 0);
  if (given.length === 0) {
    throw new AgentError(
      "EBAD_ARGUMENT",
      "empty process selector: set at least one of exe_path, build_id, pid, cgroup, library_path (an empty selector matches nothing, by design)",
    );
  }
  if (sel.exePath && !sel.exePath.startsWith("/")) {
    throw new AgentError("EBAD_ARGUMENT", `selector exe_path must be an absolute path, got "${sel.exePath}"`);
  }
  if (sel.libraryPath && !sel.libraryPath.startsWith("/")) {
    throw new AgentError("EBAD_ARGUMENT", `selector library_path must be an absolute path, got "${sel.libraryPath}"`);
  }
  if (sel.buildId && !/^[0-9a-f]{2,128}$/.test(sel.buildId)) {
    throw new AgentError("EBAD_ARGUMENT", `selector build_id must be lowercase hex, got "${sel.buildId}"`);
  }
  if (sel.cgroup && !sel.cgroup.startsWith("/")) {
    throw new AgentError("EBAD_ARGUMENT", `selector cgroup must start with '/', got "${sel.cgroup}"`);
  }
}

/** Resolves symlinks in a selector path so it compares with what /proc/PID/exe shows; unknown paths stay as given. */
async function resolvePath(p: string | undefined): Promise<string | undefined> {
  if (!p) return undefined;
  try {
    return await realpath(p);
  } catch {
    return p;
  }
}

/** Does process `p` match `sel`? Cheap checks first; build-id and maps only when asked for. */
export async function matches(p: ProcessFacts, sel: Selector, ids: BuildIdCache): Promise<boolean> {
  if (sel.pid && p.pid !== sel.pid) return false;
  if (sel.exePath && p.exePath !== sel.exePath) return false;
  if (
    sel.cgroup &&
    !(p.cgroup === sel.cgroup || p.cgroup.startsWith(sel.cgroup.endsWith("/") ? sel.cgroup : `${sel.cgroup}/`))
  ) {
    return false;
  }
  if (sel.buildId && (await ids.forProcess(p.pid)) !== sel.buildId) return false;
  if (sel.libraryPath) {
    try {
      const maps = await readMaps(p.pid);
      // " (deleted)": it still maps an older build of that library (replaced on disk since).
      const wanted = [sel.libraryPath, `${sel.libraryPath} (deleted)`];
      if (!maps.some((m) => wanted.includes(m.path))) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** Every process matching `sel` (never the agent itself), in pid order. */
export async function selectProcesses(sel: Selector, ids: BuildIdCache, signal?: AbortSignal): Promise<ProcessFacts[]> {
  checkSelector(sel);
  const resolved: Selector = { ...sel };
  const exe = await resolvePath(sel.exePath);
  const lib = await resolvePath(sel.libraryPath);
  if (exe) resolved.exePath = exe;
  if (lib) resolved.libraryPath = lib;
  const pids = sel.pid ? [sel.pid] : await listPids();
  const out: ProcessFacts[] = [];
  for (const pid of pids) {
    signal?.throwIfAborted();
    if (pid === process.pid) continue;
    const p = await readProcess(pid);
    if (p && (await matches(p, resolved, ids))) out.push(p);
  }
  return out.sort((a, b) => a.pid - b.pid);
}
