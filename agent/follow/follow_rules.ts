/** Follow rules: "apply bundle B to every new process matching S", kept next to the bundle so they survive a restart. */
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { diskError } from "../disk_error.js";
import type { Consistency } from "../engine/types.js";
import type { Selector } from "../procfs/types.js";

/** One follow rule. */
export interface FollowRule {
  /** Bundle to apply. */
  bundleId: string;
  /** Which new processes get it. */
  selector: Selector;
  /** Safety check level. */
  consistency: Consistency;
  /** Per-process safety deadline, ms. */
  safetyTimeoutMs: number;
  /** Audit identity of who set the rule. */
  actor: string;
}

export class FollowRules {
  private readonly rules = new Map<string, FollowRule>();

  constructor(private readonly folderOf: (bundleId: string) => string) {}

  private file(id: string): string {
    return path.join(this.folderOf(id), "follow.json");
  }

  /** Loads the rules of the given bundles from disk. */
  async load(bundleIds: string[]): Promise<void> {
    for (const id of bundleIds) {
      try {
        this.rules.set(id, JSON.parse(await readFile(this.file(id), "utf8")) as FollowRule);
      } catch {
        // no rule for this bundle
      }
    }
  }

  /** Stores a rule: written aside and renamed into place, so a full disk never leaves half a rule. */
  async set(rule: FollowRule): Promise<void> {
    const file = this.file(rule.bundleId);
    const tmp = `${file}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify(rule));
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw diskError(err, `store the follow rule of bundle ${rule.bundleId}`);
    }
    this.rules.set(rule.bundleId, rule);
  }

  async remove(bundleId: string): Promise<void> {
    this.rules.delete(bundleId);
    await rm(this.file(bundleId), { force: true });
  }

  all(): FollowRule[] {
    return [...this.rules.values()];
  }
}
