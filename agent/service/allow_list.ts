/**
 * The allow-list of executables and libraries this agent may patch: exact paths, or folders ending
 * in `/`. Entries are the agent's own paths: a file of a process in another mount namespace (a
 * container's /x) is allowed only when it is the very file (device, inode) at that path here.
 */
import { realpath } from "node:fs/promises";
import { type FileId, pathMeansOurs } from "../../common/index.js";

export class AllowList {
  private constructor(private readonly entries: string[]) {}

  /** Resolves symlinks in the entries (as /proc/PID/exe shows paths); entries that do not exist yet stay as written. */
  static async resolve(entries: string[]): Promise<AllowList> {
    const out = new Set<string>();
    for (const e of entries) {
      out.add(e);
      const dir = e.endsWith("/");
      const real = await realpath(e).catch(() => null);
      if (real) out.add(dir ? `${real.replace(/\/$/, "")}/` : real);
    }
    return new AllowList([...out]);
  }

  /** Whether `file` (an absolute, resolved path in the agent's own file system) may be patched. */
  allows(file: string): boolean {
    return this.entries.some((e) => (e.endsWith("/") ? file.startsWith(e) : file === e));
  }

  /** Whether `file`, which process `pid` shows as its executable or a mapped object `id`, may be patched there. */
  async allowsIn(pid: number, file: string, id: FileId | null): Promise<boolean> {
    return this.allows(file) && (await pathMeansOurs(pid, file, id));
  }
}
