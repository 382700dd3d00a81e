/** `hotpatch revert`: take a patch back in running processes on this host. */
import type { Command } from "commander";
import { codeOf } from "../../../common/index.js";
import { revertPatch } from "../../../native/index.js";
import { countOutcomes, type ProcessOutcome, runEach } from "../../local/run_each.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput } from "../output.js";
import { parseMilliseconds } from "./args.js";
import { printOutcomes } from "./outcomes.js";
import { addTargetOptions, requireTarget, resolveTargets, type TargetOptions } from "./targets.js";

interface RevertOptions extends TargetOptions {
  unload?: boolean;
  timeout?: number;
  json?: boolean;
}

async function revertIn(pid: number, id: string, opts: RevertOptions): Promise<ProcessOutcome> {
  try {
    const r = await revertPatch(pid, id, {
      unload: opts.unload === true,
      ...(opts.timeout !== undefined ? { safetyTimeoutMs: opts.timeout } : {}),
    });
    if (!r.changed) return { pid, outcome: "already", detail: `${id} is not active` };
    return {
      pid,
      outcome: "done",
      pauseUs: r.pauseUs,
      detail: `${opts.unload ? "unloaded" : "inactive"} (pause ${r.pauseUs} µs)`,
    };
  } catch (err) {
    const c = codeOf(err);
    // A process of the executable that never had the patch is not a failure of the revert.
    if (c === "ENOPATCH") return { pid, outcome: "skipped", code: c, detail: (err as Error).message };
    return { pid, outcome: "failed", code: c, detail: (err as Error).message };
  }
}

export function registerRevert(program: Command): void {
  const cmd = program
    .command("revert")
    .description("deactivate a patch in running processes on this host (restores the original code)")
    .argument("<patch-id>", "id of the patch (as `hotpatch ps` shows it)")
    .option("--unload", "also unmap the patch code once no thread is in it")
    .option("--timeout <ms>", "how long to wait for a safe moment in each process", parseMilliseconds)
    .option("--json", "print one JSON object per process, then a summary");
  addTargetOptions(cmd).action(async (id: string, opts: RevertOptions) => {
    requireTarget(cmd, opts);
    const out = createOutput(opts.json === true);
    try {
      const pids = await resolveTargets(opts);
      const results = await runEach(pids, 8, (pid) => revertIn(pid, id, opts));
      const counts = countOutcomes(results);
      printOutcomes(out, "revert", id, results, counts);
      process.exitCode = counts.failed > 0 || counts.done + counts.already === 0 ? ExitCode.Failed : ExitCode.Ok;
    } catch (err) {
      process.exitCode = out.fail(err);
    }
  });
}
