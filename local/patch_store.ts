/**
 * Where a locally applied patch's shared object lives while processes map it: a copy named by
 * patch id and content hash, so that the mapping in /proc/PID/maps names a real, lasting file (the
 * bundle's own folder is a temporary copy that goes away after the command).
 */
import { copyFile, mkdir, rename, stat } from "node:fs/promises";
import path from "node:path";

export const defaultPatchDir = "/var/lib/hotpatch/patches";

/** Copies `soPath` into the patch folder (once per id and hash) and returns the copy's path. */
export async function keepPatchFile(
  soPath: string,
  id: string,
  sha256: string,
  dir = process.env.HOTPATCH_PATCH_DIR ?? defaultPatchDir,
): Promise<string> {
  const target = path.join(dir, `${id}-${sha256.slice(0, 16)}.so`);
  if (
    await stat(target).then(
      () => true,
      () => false,
    )
  )
    return target;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = `${target}.${process.pid}.tmp`;
  await copyFile(soPath, tmp);
  await rename(tmp, target); // atomic: a reader never sees half a file
  return target;
}
