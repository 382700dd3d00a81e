/**
 * What a process really runs or maps, by device and inode, never by path string alone: a path a
 * process shows is a name inside its own mount namespace, so a container's /x is not the host's /x.
 */
import { readlink, stat } from "node:fs/promises";

/** A file by device and inode (as stat reports them on the host). */
export interface FileId {
  dev: number;
  ino: number;
}

/** The dev_t that stat reports for the "MAJOR:MINOR" (hex) a /proc/PID/maps line shows (glibc's makedev). */
export function mapsDevice(dev: string): number {
  const m = /^([0-9a-f]+):([0-9a-f]+)$/i.exec(dev);
  if (!m?.[1] || !m[2]) return -1;
  const [major, minor] = [BigInt(`0x${m[1]}`), BigInt(`0x${m[2]}`)];
  const v =
    ((major & 0xfffff000n) << 32n) | ((major & 0xfffn) << 8n) | ((minor & 0xffffff00n) << 12n) | (minor & 0xffn);
  return Number(v);
}

/** The device and inode of the executable process `pid` runs (through /proc/PID/exe, a magic link), or null when it is gone. */
export async function executableId(pid: number): Promise<FileId | null> {
  const s = await stat(`/proc/${pid}/exe`).catch(() => null);
  return s ? { dev: s.dev, ino: s.ino } : null;
}

/** Whether process `pid` sees the same file system as we do (its mount namespace is ours), so its paths mean ours. */
export async function sharesOurMounts(pid: number): Promise<boolean> {
  const [theirs, ours] = await Promise.all([
    readlink(`/proc/${pid}/ns/mnt`).catch(() => null),
    readlink("/proc/self/ns/mnt").catch(() => null),
  ]);
  return theirs !== null && theirs === ours;
}

/** Whether the file at `path` in our own file system is `id`. */
export async function isFileAt(path: string, id: FileId): Promise<boolean> {
  const s = await stat(path).catch(() => null);
  return s !== null && s.dev === id.dev && s.ino === id.ino;
}

/**
 * Whether `path`, as process `pid` shows it, names the file `id` in our file system too: always so
 * for a process of our mount namespace (even a file replaced or deleted since it was mapped), and
 * for any other only when our file at that path is that very file (a bind mount of it).
 */
export async function pathMeansOurs(pid: number, path: string, id: FileId | null): Promise<boolean> {
  if (await sharesOurMounts(pid)) return true;
  return id !== null && (await isFileAt(path, id));
}
