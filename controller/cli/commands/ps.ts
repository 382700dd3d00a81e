/** `hotpatch ps`: the patches running processes carry, read from the processes themselves. */
import { readdir, readFile } from "node:fs/promises";
import type { Command } from "commander";
import { listPatches, type PatchRecord } from "../../../native/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput } from "../output.js";
import { parsePid } from "./args.js";

interface PsOptions {
  pid?: number;
  json?: boolean;
}

/** Pids of every process whose maps show a hotpatch state descriptor. */
async function patchedPids(): Promise<number[]> {
  const pids = (await readdir("/proc")).filter((d) => /^\d+$/.test(d)).map(Number);
  const found: number[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      const text = await readFile(`/proc/${pid}/maps`, "utf8").catch(() => "");
      if (text.includes("/memfd:hotpatch-state")) found.push(pid);
    }),
  );
  return found.sort((a, b) => a - b);
}

function describe(pid: number, p: PatchRecord): string[] {
  const lines = [`${pid}  ${p.id}  ${p.state}  ${p.soPath}`];
  for (const f of p.functions) {
    lines.push(
      `    ${f.symbol} 0x${f.address.toString(16)} -> 0x${f.replacement.toString(16)} (${f.jump}, ${f.consistency})`,
    );
  }
  return lines;
}

export function registerPs(program: Command): void {
  program
    .command("ps")
    .description("list the patches in running processes (read from each process itself)")
    .option("--pid <pid>", "only this process", parsePid)
    .option("--json", "print one JSON object per process")
    .action(async (opts: PsOptions) => {
      const out = createOutput(opts.json === true);
      try {
        const pids = opts.pid !== undefined ? [opts.pid] : await patchedPids();
        let shown = 0;
        for (const pid of pids) {
          const patches = await listPatches(pid);
          out.record({ pid, patches });
          for (const p of patches) {
            for (const line of describe(pid, p)) out.line(line);
            shown++;
          }
        }
        if (shown === 0)
          out.line(opts.pid !== undefined ? `process ${opts.pid} carries no patch` : "no process carries a patch");
        process.exitCode = ExitCode.Ok;
      } catch (err) {
        process.exitCode = out.fail(err);
      }
    });
}
