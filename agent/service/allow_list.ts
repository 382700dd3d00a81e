/** The allow-list of executables and libraries this agent may patch: exact paths, or folders ending in `/`. */
import { realpath } from "node:fs/promises";

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

  /** Whether `file` (an absolute, resolved path) may be patched. */
  allows(file: string): boolean {
    return this.entries.some((e) => (e.endsWith("/") ? file.startsWith(e) : file === e));
  }
}
