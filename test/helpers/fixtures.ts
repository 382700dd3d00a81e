/**
 * Compiles the C/C++ fixtures the tests run against, once per source and flag set, into
 * node_modules/.cache/hotpatch-fixtures (kept between runs, ignored by git).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const cacheDir = path.join(root, "node_modules/.cache/hotpatch-fixtures");

/** Path of a fixture source under test/fixtures. */
export function fixtureSource(name: string): string {
  return path.join(root, "test/fixtures", name);
}

/**
 * Compiles a fixture with the given compiler flags and returns the path of the output.
 * The output name carries a hash of source and flags, so a changed fixture is rebuilt.
 */
export async function compileFixture(source: string, flags: string[] = [], compiler = "gcc"): Promise<string> {
  const src = fixtureSource(source);
  const hash = createHash("sha256")
    .update(readFileSync(src))
    .update(JSON.stringify([compiler, flags]))
    .digest("hex")
    .slice(0, 16);
  const out = path.join(cacheDir, `${path.basename(source).replace(/\.[^.]+$/, "")}-${hash}`);
  if (!existsSync(out)) {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = `${out}.tmp${process.pid}`;
    await execFileAsync(compiler, [...flags, "-o", tmp, src]);
    await execFileAsync("mv", [tmp, out]);
  }
  return out;
}

/** Runs a command and returns its stdout. */
export async function runTool(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** A running fixture process that prints `ready <pid>` when it is up; kill() ends it. */
export interface RunningFixture {
  pid: number;
  child: ChildProcess;
  kill(): Promise<void>;
}

/** Starts a fixture binary and waits for its `ready` line. */
export async function startFixture(binary: string, args: string[] = [], timeoutMs = 10_000): Promise<RunningFixture> {
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "inherit"] });
  const pid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${binary} did not print 'ready' within ${timeoutMs} ms`)),
      timeoutMs,
    );
    let seen = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      seen += chunk.toString();
      const m = /ready (\d+)/.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${binary} exited with ${code} before it was ready`));
    });
  });
  return {
    pid,
    child,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
  };
}
