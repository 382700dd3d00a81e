/** Runs the built `hotpatch` command as a user would, and returns its exit code and output. */
import { execFile } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const hotpatchBin = path.join(root, "bin/hotpatch.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `hotpatch ARGS`, under `launcher` (a command prefix such as `withoutCapabilities(...)`) when given. */
export function hotpatch(args: string[], options: { launcher?: string[] } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    // Applied patches are kept in a folder of the tests' own, not the host's /var/lib/hotpatch.
    const env = { ...process.env, HOTPATCH_PATCH_DIR: path.join(os.tmpdir(), "hotpatch-test-patches") };
    const [cmd, ...prefix] = [...(options.launcher ?? []), process.execPath];
    execFile(
      cmd ?? process.execPath,
      [...prefix, hotpatchBin, ...args],
      { env, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The JSON objects printed one per line by a `--json` command. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
