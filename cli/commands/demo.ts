/** `hotpatch demo`: the whole story on one machine (NATS, two pairs, a rollout under load, a drill). */
import type { Command } from "commander";
import { runDemo } from "../../deploy/demo/index.js";
import { createOutput } from "../output.js";

interface DemoCliOptions {
  json?: boolean;
  keep?: boolean;
}

const demoHelp = `
Needs root (each node runs in its own PID namespace) and nats-server; \`npm run demo\` installs
what is missing first. Ctrl-C stops every process the demo started.

Exit codes of demo:
  0    the fix rolled through both pairs with no failed request and no wrong answer after it, and
       the switchover drill completed
  1    any of that did not happen (the output says which)
  130  interrupted (Ctrl-C); everything the demo started was stopped`;

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "run the whole story on this machine in under a minute: two 1+1 pairs under load, a fix rolled out standby-first, a switchover drill",
    )
    .option("--json", "print one JSON summary at the end instead of the story and the table")
    .option("--keep", "keep the demo's working folder (bundle, plan, agent configs and logs)")
    .addHelpText("after", demoHelp)
    .action(async (opts: DemoCliOptions) => {
      const out = createOutput(opts.json === true);
      const interrupted = new AbortController();
      const stop = () => interrupted.abort();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        process.exitCode = await runDemo({
          json: opts.json === true,
          keep: opts.keep === true,
          signal: interrupted.signal,
        });
      } catch (err) {
        process.exitCode = out.fail(err);
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }
    });
}
