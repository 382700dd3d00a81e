/** Finding local processes to patch: by pid, every process of one executable, or of one library. */
import { readdir, readFile, stat } from "node:fs/promises";

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

/** Pids of every process that maps the same file (device and inode) as `libPath`. */
export async function pidsMappingLibrary(libPath: string): Promise<number[]> {
  const wanted = await stat(libPath);
  const devIno = `${wanted.ino}`;
  const found: number[] = [];
  await Promise.all(
    (await allPids()).map(async (pid) => {
      const maps = await readFile(`/proc/${pid}/maps`, "utf8").catch(() => "");
      // Columns: range perms offset dev inode path. Compare the inode column first (cheap), then
      // confirm the device through the process's own view of the path.
      for (const line of maps.split("\n")) {
        const cols = line.split(/\s+/);
        if (cols[4] !== devIno || !cols[5]) continue;
        const s = await stat(`/proc/${pid}/root${cols[5]}`).catch(() => null);
        if (s && s.dev === wanted.dev && s.ino === wanted.ino) {
          found.push(pid);
          break;
        }
      }
    }),
  );
  return found.sort((a, b) => a - b);
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
