/** Runs promote/demote hooks and role commands: argv form, a timeout, output captured. */
import { execFile } from "node:child_process";
import type { CommandConfig } from "../config/types.js";
import { AgentError } from "../errors.js";

/** Runs a command and resolves with its stdout; EHOOK when it fails, times out or is cancelled. */
export function runCommand(
  cmd: CommandConfig,
  what: string,
  env: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<string> {
  const [file, ...args] = cmd.argv;
  return new Promise((resolve, reject) => {
    execFile(
      file as string,
      args,
      {
        timeout: cmd.timeoutMs,
        killSignal: "SIGKILL",
        env: { ...process.env, ...env },
        maxBuffer: 1024 * 1024,
        ...(signal ? { signal } : {}),
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
        const why = e.killed
          ? `timed out after ${cmd.timeoutMs} ms`
          : e.code === "ENOENT"
            ? "command not found"
            : e.name === "AbortError"
              ? "cancelled"
              : `exited with ${String(e.code)}: ${stderr.trim().slice(0, 300)}`;
        reject(new AgentError("EHOOK", `${what} (${cmd.argv.join(" ")}) ${why}`, {}, { cause: err }));
      },
    );
  });
}
