/**
 * Compiles the C/C++ fixtures the tests run against, once per source and flag set, into
 * node_modules/.cache/hotpatch-fixtures (kept between runs, ignored by git).
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
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
 * Compiles a fixture (one source, or several linked together; paths relative to test/fixtures)
 * with the given compiler flags and returns the path of the output. The output name carries a hash
 * of the sources and flags, so a changed fixture is rebuilt.
 */
export async function compileFixture(
  sources: string | string[],
  flags: string[] = [],
  compiler = "gcc",
): Promise<string> {
  const srcs = (Array.isArray(sources) ? sources : [sources]).map(fixtureSource);
  const hash = createHash("sha256");
  for (const src of srcs) hash.update(readFileSync(src));
  const digest = hash
    .update(JSON.stringify([compiler, flags]))
    .digest("hex")
    .slice(0, 16);
  const first = path.basename(srcs[0] ?? "fixture").replace(/\.[^.]+$/, "");
  const out = path.join(cacheDir, `${first}-${digest}`);
  if (!existsSync(out)) {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = `${out}.tmp${process.pid}`;
    await execFileAsync(compiler, [...flags, "-o", tmp, ...srcs]);
    await execFileAsync("mv", [tmp, out]);
  }
  return out;
}

/** What a target's maps show for the memfd the engine hands patch `id` over in (native/src/engine/patch_delivery.cc). */
export function patchMemfdPath(id: string): string {
  return `/memfd:hotpatch-patch-${id} (deleted)`;
}

/** Runs a command and returns its stdout. */
export async function runTool(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** The state letter of process `pid` in /proc/PID/stat (R, S, t, Z, ...), or null when it is gone. */
export async function processState(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  return stat === null ? null : (stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? null);
}

/** A running fixture process that prints `ready <pid>` when it is up. */
export interface RunningFixture {
  /** The fixture's own pid (not the wrapper's). */
  pid: number;
  /** Everything it printed on stdout so far. */
  output(): string;
  /** Resolves with the first line printed from now on that matches `re`. */
  nextLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Whether it is still running (not exited, not a zombie). */
  alive(): boolean;
  /** Kills it (SIGKILL) and waits until it is gone. */
  kill(): Promise<void>;
  /** Resolves once it has exited and its parent (the wrapper) has reaped it. */
  ended: Promise<void>;
}

/**
 * Starts a fixture binary and waits for its `ready` line. The fixture runs under a `sh` that waits
 * for it, so it is not a child of the test process: ptrace stops of a child would also be reported
 * to libuv's child watcher, which would take them for an exit. `env` adds variables to the
 * fixture's environment (LD_PRELOAD, GLIBC_TUNABLES, ...).
 */
export async function startFixture(
  binary: string,
  args: string[] = [],
  timeoutMs = 10_000,
  env: Record<string, string> = {},
): Promise<RunningFixture> {
  const child = spawn("sh", ["-c", 'exec 3>&2 2>/dev/null; "$0" "$@" 2>&3 & wait $!', binary, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  let seen = "";
  const waiters: { re: RegExp; from: number; resolve: (l: string) => void }[] = [];
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  child.stdout?.on("data", (chunk: Buffer) => {
    seen += chunk.toString();
    for (const w of [...waiters]) {
      const lines = seen.slice(w.from).split("\n");
      const done = lines.slice(0, -1).find((l) => w.re.test(l));
      if (done !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(done);
      }
    }
  });
  const nextLine = (re: RegExp, ms = 10_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${binary}: no line matching ${re} within ${ms} ms`)), ms);
      waiters.push({
        re,
        from: seen.length,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`${binary} exited while waiting for ${re}`));
      });
    });
  const ready = await Promise.race([
    nextLine(/^ready \d+$/, timeoutMs),
    exited.then(() => Promise.reject(new Error(`${binary} exited before it was ready`))),
  ]);
  const pid = Number(ready.split(" ")[1]);
  return {
    pid,
    output: () => seen,
    nextLine,
    alive: () => !gone,
    ended: exited,
    async kill() {
      if (gone) return;
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
      await exited;
    },
  };
}

/**
 * Starts `binary ARGS` the way a container runs: in a mount namespace of its own whose root is a
 * tmpfs only that namespace has (pivot_root, the old root detached), holding copies of `files`
 * (the binary among them) at their host paths, with the host's /usr bound in for the libraries.
 * Its paths, as the host reads them in /proc/PID/exe and maps, are then the host's very paths,
 * naming other files. `scratch` is an empty folder of the caller's for the mount point.
 */
export async function startContained(
  scratch: string,
  binary: string,
  args: string[],
  files: string[],
): Promise<RunningFixture> {
  const root = path.join(scratch, "root");
  const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const setup = [
    `mkdir ${q(root)}`,
    `mount -t tmpfs none ${q(root)}`,
    `cd ${q(root)}`,
    "mkdir -p usr old proc",
    "mount --bind /usr usr",
    "ln -s usr/bin bin && ln -s usr/lib lib && ln -s usr/lib64 lib64",
    ...files.map((f) => `mkdir -p ${q(`.${path.dirname(f)}`)} && cp ${q(f)} ${q(`.${f}`)}`),
    "pivot_root . old",
    `exec chroot . sh -c ${q(`mount -t proc proc /proc && umount -l /old && exec "$0" "$@"`)} ${[binary, ...args].map(q).join(" ")}`,
  ].join(" && ");
  return startFixture("unshare", ["--mount", "--propagation", "private", "sh", "-c", setup]);
}
