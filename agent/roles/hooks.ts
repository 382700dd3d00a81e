/** Runs promote/demote hooks and role commands: argv form, a timeout, output captured. */
import { spawn } from "node:child_process";
import type { CommandConfig } from "../config/types.js";
import { AgentError } from "../errors.js";

/** Output kept per stream; the rest is dropped. */
const MAX_OUTPUT = 1024 * 1024;

/**
 * Runs a command and resolves with its stdout; EHOOK when it fails, times out or is cancelled.
 * The command runs in a process group of its own, and a timeout or a cancel kills the whole group
 * (SIGKILL): a hook script's children end with it, and none keeps its output open.
 */
export function runCommand(
  cmd: CommandConfig,
  what: string,
  env: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<string> {
  const [file, ...args] = cmd.argv;
  const fail = (why: string, cause?: unknown) =>
    new AgentError("EHOOK", `${what} (${cmd.argv.join(" ")}) ${why}`, {}, cause === undefined ? {} : { cause });
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(fail("cancelled", signal.reason));
    const child = spawn(file as string, args, {
      env: { ...process.env, ...env },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let killedFor: string | null = null;
    const kill = (why: string) => {
      killedFor ??= why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // the group is already gone
      }
    };
    const timer = setTimeout(() => kill(`timed out after ${cmd.timeoutMs} ms`), cmd.timeoutMs);
    const onAbort = () => kill("cancelled");
    signal?.addEventListener("abort", onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    child.stdout.on("data", (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += d.toString();
    });
    child.once("error", (err: NodeJS.ErrnoException) => {
      done();
      reject(fail(err.code === "ENOENT" ? "command not found" : `could not be started: ${err.message}`, err));
    });
    child.once("close", (code, sig) => {
      done();
      if (killedFor) return reject(fail(killedFor));
      if (code === 0) return resolve(stdout);
      reject(fail(`exited with ${code ?? sig}: ${stderr.trim().slice(0, 300)}`));
    });
  });
}
