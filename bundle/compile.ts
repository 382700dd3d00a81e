/** Compiling the replacement source into patch.so with the system compiler. */
import { execFile } from "node:child_process";
import path from "node:path";
import { BundleError, throwIfAborted } from "./errors.js";

/** The fixed flags every patch is built with; user flags follow them. */
export const BASE_FLAGS = ["-shared", "-fPIC", "-O2"];
const MAX_MESSAGE = 8 * 1024;

/** Whether a source file is C++ (by extension), C, or neither. */
export function sourceLanguage(source: string): "c" | "c++" | null {
  const ext = path.extname(source);
  if (ext === ".c") return "c";
  if ([".cc", ".cpp", ".cxx", ".C", ".c++"].includes(ext)) return "c++";
  return null;
}

interface RunResult {
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs: number, signal?: AbortSignal): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, killSignal: "SIGKILL", ...(signal ? { signal } : {}) },
      (err, stdout, stderr) => (err ? reject(Object.assign(err, { stdout, stderr })) : resolve({ stdout, stderr })),
    );
  });
}

/** The compiler's first `--version` line, e.g. `gcc (Debian 12.2.0-14) 12.2.0`. */
export async function compilerVersion(compiler: string, signal?: AbortSignal): Promise<string> {
  try {
    const { stdout } = await run(compiler, ["--version"], 10_000, signal);
    return (stdout.split("\n")[0] ?? compiler).trim().slice(0, 256) || compiler;
  } catch (err) {
    throwIfAborted(signal);
    const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
    throw new BundleError(
      "ECOMPILE",
      missing
        ? `compiler ${compiler} not found; install it (apt-get install gcc g++) or pass another one`
        : `cannot run ${compiler} --version: ${(err as Error).message}`,
      { path: compiler },
      { cause: err },
    );
  }
}

/** Compiles `source` into the shared object `out`. ECOMPILE carries the compiler's own message. */
export async function compilePatch(
  compiler: string,
  source: string,
  flags: string[],
  out: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await run(compiler, [...flags, "-o", out, source], timeoutMs, signal);
  } catch (err) {
    throwIfAborted(signal);
    const e = err as NodeJS.ErrnoException & { stderr?: string; killed?: boolean };
    const output = (e.stderr ?? "").trim();
    const why = e.killed
      ? `did not finish within ${timeoutMs} ms`
      : output.length > 0
        ? `failed:\n${output.length > MAX_MESSAGE ? `${output.slice(0, MAX_MESSAGE)}\n…` : output}`
        : `failed: ${e.message}`;
    throw new BundleError("ECOMPILE", `${compiler} ${path.basename(source)} ${why}`, { path: source }, { cause: err });
  }
}
