/** The `--pid PID | --exe PATH | --lib PATH` choice shared by apply and revert. */
import { type Command, Option } from "commander";
import { pidsMappingLibrary, pidsOfExecutable } from "../../local/index.js";
import { parsePid } from "./args.js";

export interface TargetOptions {
  pid?: number;
  exe?: string;
  lib?: string;
}

export function addTargetOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--pid <pid>", "the process to operate on").argParser(parsePid).conflicts(["exe", "lib"]))
    .addOption(new Option("--exe <path>", "every running process of this executable file").conflicts(["pid", "lib"]))
    .addOption(
      new Option("--lib <path>", "every running process that maps this shared library").conflicts(["pid", "exe"]),
    );
}

/** A usage error (exit 2) unless --pid, --exe or --lib was given. */
export function requireTarget(cmd: Command, opts: TargetOptions): void {
  if (opts.pid === undefined && opts.exe === undefined && opts.lib === undefined) {
    cmd.error("error: give --pid PID, --exe PATH or --lib PATH", { exitCode: 2 });
  }
}

/** The pids the options name. */
export async function resolveTargets(opts: TargetOptions): Promise<number[]> {
  if (opts.pid !== undefined) return [opts.pid];
  if (opts.exe !== undefined) return pidsOfExecutable(opts.exe);
  return opts.lib !== undefined ? pidsMappingLibrary(opts.lib) : [];
}
