/** `hotpatch apply`: verify a bundle and patch running processes on this host with it. */
import type { Command } from "commander";
import { type Bundle, checkBundleTarget, openBundle, patchSpecOf } from "../../bundle/index.js";
import { codeOf } from "../../common/index.js";
import {
  countOutcomes,
  groupByExecutable,
  mappedLibraries,
  mappedLibrary,
  type ProcessOutcome,
} from "../../local/index.js";
import { applyPatchToMany, type Consistency } from "../../native/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput, type Output } from "../output.js";
import { parseMilliseconds } from "./args.js";
import { printOutcomes } from "./outcomes.js";
import { addTargetOptions, requireTarget, resolveTargets, type TargetOptions } from "./targets.js";

interface ApplyOptions extends TargetOptions {
  consistency?: Consistency;
  timeout?: number;
  debugDir?: string[];
  trustedKey?: string[];
  parallel?: number;
  json?: boolean;
}

/**
 * Splits the pids into those the bundle was built for and those it was not (skipped, with the
 * reason). The build-id is compared with what each process really has mapped: its /proc/PID/exe
 * (each distinct file read once), or for a library bundle the library as mapped, which after a
 * package upgrade may be an older build than the file now at that path.
 */
async function eligible(
  bundle: Bundle,
  pids: number[],
  lib: string | undefined,
): Promise<{ ok: number[]; skipped: ProcessOutcome[] }> {
  const ok: number[] = [];
  const skipped: ProcessOutcome[] = [];
  if (bundle.manifest.target.kind === "library") {
    const expected = bundle.manifest.target.buildId;
    for (const pid of pids) {
      try {
        // Without --lib, the library is the one the process maps with the bundle's build-id.
        const mapped = lib === undefined ? await mappedLibraries(pid) : await mappedLibrary(pid, lib);
        if (mapped.some((o) => o.buildId === expected)) {
          ok.push(pid);
          continue;
        }
        if (lib === undefined) {
          skipped.push({
            pid,
            outcome: "skipped",
            code: "EBUILDID",
            detail: `process ${pid} maps no library with build-id ${expected} (bundle ${bundle.manifest.id}, built for ${bundle.manifest.target.path ?? "a library"})`,
          });
          continue;
        }
        const what = mapped
          .map(
            (o) =>
              `${o.path}${o.disk === "same" ? "" : ` (${o.disk} on disk)`} with build-id ${o.buildId ?? `(none: ${o.unreadable ?? "it has none"})`}`,
          )
          .join(", ");
        skipped.push({
          pid,
          outcome: "skipped",
          code: "EBUILDID",
          detail: `process ${pid} maps ${what || `no ${lib}`}; bundle ${bundle.manifest.id} is for build-id ${expected}`,
        });
      } catch (err) {
        skipped.push({ pid, outcome: "skipped", code: codeOf(err), detail: (err as Error).message });
      }
    }
    return { ok, skipped };
  }
  for (const group of (await groupByExecutable(pids)).values()) {
    try {
      await checkBundleTarget(bundle, `/proc/${group[0]}/exe`);
      ok.push(...group);
    } catch (err) {
      for (const pid of group)
        skipped.push({ pid, outcome: "skipped", code: codeOf(err), detail: (err as Error).message });
    }
  }
  return { ok, skipped };
}

async function run(bundlePath: string, opts: ApplyOptions, out: Output): Promise<ExitCode> {
  const bundle = await openBundle(
    bundlePath,
    opts.trustedKey ? { trustedKeys: opts.trustedKey, requireSignature: true } : {},
  );
  try {
    const { ok, skipped } = await eligible(bundle, await resolveTargets(opts), opts.lib);
    const applied = await applyPatchToMany(
      ok,
      patchSpecOf(bundle.manifest, bundle.soPath), // copied into each target's own memfd: nothing outlives the command
      {
        parallel: opts.parallel ?? 4,
        ...(opts.consistency ? { consistency: opts.consistency } : {}),
        ...(opts.timeout !== undefined ? { safetyTimeoutMs: opts.timeout } : {}),
        ...(opts.debugDir ? { debugDirs: opts.debugDir } : {}),
      },
    );
    const results: ProcessOutcome[] = [
      ...applied.map((r): ProcessOutcome => {
        if (r.outcome === "failed") return { pid: r.pid, outcome: "failed", code: r.code, detail: r.message };
        if (r.outcome === "already")
          return { pid: r.pid, outcome: "already", detail: `${bundle.manifest.id} is already active` };
        const fns = r.patch.functions.map(
          (f) => `${f.symbol}@0x${f.address.toString(16)}→0x${f.replacement.toString(16)}`,
        );
        const functions = r.patch.functions.map(({ symbol, address, replacement, jump }) => ({
          symbol,
          address,
          replacement,
          jump,
        }));
        return {
          pid: r.pid,
          outcome: "done",
          pauseUs: r.pauseUs,
          detail: `${fns.join(", ")} (pause ${r.pauseUs} µs)`,
          functions,
        };
      }),
      ...skipped,
    ].sort((a, b) => a.pid - b.pid);
    const counts = countOutcomes(results);
    printOutcomes(out, "apply", bundle.manifest.id, results, counts);
    // Nothing patched is a failure: the operator asked for a patch that landed nowhere.
    return counts.failed > 0 || counts.done + counts.already === 0 ? ExitCode.Failed : ExitCode.Ok;
  } finally {
    await bundle.dispose();
  }
}

export function registerApply(program: Command): void {
  const cmd = program
    .command("apply")
    .description("patch running processes on this host with a bundle (verified first)")
    .argument("<bundle>", "bundle directory or .tar")
    .option(
      "--consistency <level>",
      "strict (default): no thread in or returning into a replaced function; entry: only its first bytes",
    )
    .option("--timeout <ms>", "how long to wait for a safe moment in each process", parseMilliseconds)
    .option(
      "--debug-dir <dir>",
      "where to find separate debug info by build-id (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      "--trusted-key <file>",
      "accept only bundles signed by this ed25519 public key (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("--parallel <n>", "processes patched at the same time (default 4)", (v: string) =>
      Math.min(64, Math.max(1, Number.parseInt(v, 10) || 1)),
    )
    .option("--json", "print one JSON object per process, then a summary");
  addTargetOptions(cmd).action(async (bundlePath: string, opts: ApplyOptions) => {
    requireTarget(cmd, opts);
    if (opts.consistency !== undefined && opts.consistency !== "strict" && opts.consistency !== "entry") {
      cmd.error("error: --consistency must be strict or entry", { exitCode: 2 });
    }
    const out = createOutput(opts.json === true);
    try {
      process.exitCode = await run(bundlePath, opts, out);
    } catch (err) {
      process.exitCode = out.fail(err);
    }
  });
}
