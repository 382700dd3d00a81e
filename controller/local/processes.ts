/** Finding local processes to patch: by pid, or every process of one executable file. */
import { readdir, stat } from "node:fs/promises";

/** Pids of every process whose `/proc/PID/exe` is the same file (device and inode) as `exePath`. */
export async function pidsOfExecutable(exePath: string): Promise<number[]> {
  const wanted = await stat(exePath);
  const pids = (await readdir("/proc")).filter((d) => /^\d+$/.test(d)).map(Number);
  const found: number[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      // stat follows the magic link to the real file, also across mount namespaces.
      const s = await stat(`/proc/${pid}/exe`).catch(() => null);
      if (s && s.dev === wanted.dev && s.ino === wanted.ino && pid !== process.pid) found.push(pid);
    }),
  );
  return found.sort((a, b) => a - b);
}
