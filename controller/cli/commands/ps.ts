/** `hotpatch ps`: the patches running processes carry, read from the processes themselves. */
import { readdir, readFile } from "node:fs/promises";
import type { Command } from "commander";
import { codeOf } from "../../../common/index.js";
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
    .option("--json", "print one JSON object per process ({pid, patches} or {pid, error})")
    .action(async (opts: PsOptions) => {
      const out = createOutput(opts.json === true);
      try {
        if (opts.pid !== undefined) {
          const patches = await listPatches(opts.pid);
          out.record({ pid: opts.pid, patches });
          for (const p of patches) for (const line of describe(opts.pid, p)) out.line(line);
          if (patches.length === 0) out.line(`process ${opts.pid} carries no patch`);
          process.exitCode = ExitCode.Ok;
          return;
        }
        // A scan lists what it can read; a process that cannot be read is named on stderr with
        // its code (it may be gone by now, or carry a descriptor of another hotpatch version).
        let shown = 0;
        for (const pid of await patchedPids()) {
          try {
            const patches = await listPatches(pid);
            out.record({ pid, patches });
            for (const p of patches) for (const line of describe(pid, p)) out.line(line);
            shown += patches.length;
          } catch (err) {
            const code = codeOf(err);
            out.record({ pid, error: { code, message: (err as Error).message } });
            process.stderr.write(`hotpatch: process ${pid}: [${code}] ${(err as Error).message}\n`);
          }
        }
        if (shown === 0) out.line("no process carries a patch");
        process.exitCode = ExitCode.Ok;
      } catch (err) {
        process.exitCode = out.fail(err);
      }
    });
}
