/** `hotpatch agent --config FILE`: runs the per-host agent until SIGINT/SIGTERM. */
import type { Command } from "commander";
import { AgentError, loadConfig, startAgent } from "../../agent/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput } from "../output.js";
import { version } from "../version.js";

interface AgentOptions {
  config: string;
  json?: boolean;
}

export function registerAgent(program: Command): void {
  program
    .command("agent")
    .description("run the per-host agent: gRPC service, heartbeats over NATS, role management")
    .requiredOption("--config <file>", "agent configuration (YAML)")
    .option("--json", "print errors as JSON (logs are always JSON lines on stderr)")
    .action(async (opts: AgentOptions) => {
      const out = createOutput(opts.json === true);
      let agent: Awaited<ReturnType<typeof startAgent>>;
      try {
        agent = await startAgent(await loadConfig(opts.config), { version });
      } catch (err) {
        if (err instanceof AgentError) {
          if (out.json) out.record({ error: { code: err.code, message: err.message } });
          else process.stderr.write(`hotpatch: error [${err.code}]: ${err.message}\n`);
          process.exitCode = err.code === "ECONFIG" ? ExitCode.Usage : ExitCode.Failed;
          return;
        }
        process.exitCode = out.fail(err);
        return;
      }
      out.record({ started: { grpcPort: agent.grpcPort, metricsPort: agent.metricsPort } });
      out.line(
        `hotpatch agent listening on gRPC port ${agent.grpcPort}${agent.metricsPort ? `, metrics on ${agent.metricsPort}` : ""}`,
      );
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        process.once("SIGINT", done);
        process.once("SIGTERM", done);
      });
      await agent.stop();
      process.exitCode = ExitCode.Ok;
    });
}
