/** The `--pid PID | --exe PATH` choice shared by apply and revert. */
import { type Command, Option } from "commander";
import { pidsOfExecutable } from "../../local/processes.js";
import { parsePid } from "./args.js";

export interface TargetOptions {
  pid?: number;
  exe?: string;
}

export function addTargetOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--pid <pid>", "the process to operate on").argParser(parsePid).conflicts("exe"))
    .addOption(new Option("--exe <path>", "every running process of this executable file").conflicts("pid"));
}

/** A usage error (exit 2) unless --pid or --exe was given. */
export function requireTarget(cmd: Command, opts: TargetOptions): void {
  if (opts.pid === undefined && opts.exe === undefined)
    cmd.error("error: give --pid PID or --exe PATH", { exitCode: 2 });
}

/** The pids the options name. */
export async function resolveTargets(opts: TargetOptions): Promise<number[]> {
  if (opts.pid !== undefined) return [opts.pid];
  return opts.exe !== undefined ? pidsOfExecutable(opts.exe) : [];
}
