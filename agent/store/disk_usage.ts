/** Bytes held by a folder tree (file sizes), for the upload quota. */
import { lstat, readdir } from "node:fs/promises";
import path from "node:path";

/** Sum of the sizes of the files under `dir` (links not followed); entries removed meanwhile count 0. */
export async function treeBytes(dir: string, skip: (name: string) => boolean = () => false): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
  let total = 0;
  for (const name of names) {
    if (skip(name)) continue;
    const p = path.join(dir, name);
    const st = await lstat(p).catch(() => null);
    if (st?.isDirectory()) total += await treeBytes(p);
    else if (st) total += st.size;
  }
  return total;
}
