/** The `hotpatch` command tree. Each command lives in commands/ and registers itself here. */
import { Command, CommanderError } from "commander";
import { registerAgent } from "./commands/agent.js";
import { registerApply } from "./commands/apply.js";
import { registerBuild } from "./commands/build.js";
import { registerCluster } from "./commands/cluster.js";
import { registerDemo } from "./commands/demo.js";
import { registerDrill } from "./commands/drill.js";
import { registerElf } from "./commands/elf.js";
import { registerInspect } from "./commands/inspect.js";
import { registerKeygen } from "./commands/keygen.js";
import { registerPs } from "./commands/ps.js";
import { registerRevert } from "./commands/revert.js";
import { registerRollout } from "./commands/rollout.js";
import { ExitCode } from "./exit_codes.js";
import { version } from "./version.js";

const exitCodeHelp = `
Exit codes:
  0   everything asked for was done
  1   the operation ran and failed (the error line names the code, e.g. [EBAD_ELF])
  2   the command line was wrong
  70  hotpatch itself is broken or not built`;

export function buildProgram(): Command {
  const program = new Command("hotpatch")
    .description("Live-patch functions inside running Linux processes, and roll patches across 1+1 pairs.")
    .version(version)
    .showHelpAfterError()
    .addHelpText("after", exitCodeHelp)
    .exitOverride();
  registerAgent(program);
  registerElf(program);
  registerApply(program);
  registerPs(program);
  registerRevert(program);
  registerBuild(program);
  registerInspect(program);
  registerKeygen(program);
  registerRollout(program);
  registerCluster(program);
  registerDrill(program);
  registerDemo(program);
  return program;
}

/** Runs the CLI on argv (as process.argv) and returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : ExitCode.Ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0.
      return err.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
    }
    process.stderr.write(`hotpatch: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    return ExitCode.Internal;
  }
}
