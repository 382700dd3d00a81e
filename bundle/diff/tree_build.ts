/**
 * Running the program's own build with compiler wrappers to learn each translation unit's exact
 * command (or reading compile_commands.json), then compiling the touched units twice: from the
 * original tree and from the patched copy, with `-ffunction-sections -fdata-sections` added so
 * that each function and each object gets a section of its own.
 */
import { execFile, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, chmod, cp, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { BundleError, throwIfAborted } from "../errors.js";

/** Compiler names the wrappers stand in for. */
export const WRAPPED = ["cc", "gcc", "g++", "c++", "clang", "clang++"] as const;
const SOURCE = /\.(c|cc|cpp|cxx|C|c\+\+)$/;
/** Options whose value is the next argument. */
const WITH_VALUE = new Set([
  "-o",
  "-I",
  "-D",
  "-U",
  "-include",
  "-imacros",
  "-isystem",
  "-iquote",
  "-idirafter",
  "-MF",
  "-MT",
  "-MQ",
  "-x",
  "-L",
  "-l",
  "-Xlinker",
  "-T",
]);
/** Options that only concern dependency files or linking: dropped from a unit's compile command. */
const DROP_ALONE = new Set([
  "-MD",
  "-MMD",
  "-MP",
  "-M",
  "-MM",
  "-shared",
  "-static",
  "-pie",
  "-no-pie",
  "-rdynamic",
  "-s",
  "-c",
]);
const DROP_WITH_VALUE = new Set(["-o", "-MF", "-MT", "-MQ", "-L", "-l", "-Xlinker", "-T"]);
/** What the comparison needs from every compile. */
export const SECTION_FLAGS = ["-ffunction-sections", "-fdata-sections"];

/** One translation unit as the build compiles it. */
export interface CompileUnit {
  /** The source file, relative to the tree root. */
  source: string;
  /** The directory the compiler ran in, relative to the tree root. */
  dir: string;
  /** The compiler as the build named it (cc, gcc, g++, …). */
  compiler: string;
  /** The source as the command named it (so that `__FILE__` comes out the same). */
  sourceArg: string;
  /** The arguments, without the source, `-c`, `-o` and dependency-file options; paths as in the source tree. */
  args: string[];
}

function ebuild(message: string, cause?: unknown): BundleError {
  return new BundleError("EBUILD_COMMAND", message, {}, cause === undefined ? undefined : { cause });
}

/** Writes the discovery wrappers: each records its working directory and arguments, compiles nothing, and creates its `-o` output empty. */
async function writeWrappers(dir: string, recordDir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const name of WRAPPED) {
    const script = `#!/bin/sh
# hotpatch build: records this compiler command (NUL-separated) and compiles nothing.
f=$(mktemp "${recordDir}/rec.XXXXXXXX") || exit 1
{ printf '%s\\0' "$PWD" "${name}"; for a in "$@"; do printf '%s\\0' "$a"; done; } > "$f"
out=; prev=
for a in "$@"; do
  case "$prev" in -o) out=$a ;; esac
  case "$a" in -o?*) out=\${a#-o} ;; esac
  prev=$a
done
[ -n "$out" ] && : > "$out"
exit 0
`;
    await writeFile(path.join(dir, name), script);
    await chmod(path.join(dir, name), 0o755);
  }
}

/** The part of a recorded command that compiles `source`, as a unit (sources relative to the tree root). */
function unitsOf(root: string, cwd: string, compiler: string, argv: string[]): CompileUnit[] {
  const sources: string[] = [];
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (WITH_VALUE.has(a)) {
      if (!DROP_WITH_VALUE.has(a)) args.push(a, argv[i + 1] ?? "");
      i++;
      continue;
    }
    if (DROP_ALONE.has(a) || /^-(o|l|L|MF|MT|MQ)./.test(a) || a.startsWith("-Wl,")) continue;
    if (!a.startsWith("-") && SOURCE.test(a)) {
      sources.push(a);
      continue;
    }
    if (!a.startsWith("-") && /\.(o|a|so(\.\d+)*)$/.test(a)) continue;
    args.push(a);
  }
  const dir = path.relative(root, cwd);
  if (dir.startsWith("..")) return [];
  return sources.map((s) => ({ source: path.relative(root, path.resolve(cwd, s)), sourceArg: s, dir, compiler, args }));
}

function runShell(command: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number, signal?: AbortSignal) {
  return new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], {
      cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
      ...(signal ? { signal } : {}),
    });
    let output = "";
    const keep = (b: Buffer) => {
      output = (output + b.toString()).slice(-8192);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const timer = setTimeout(() => {
      if (child.pid) process.kill(-child.pid, "SIGKILL");
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** A `make` command is re-run with `-B -k` (every target out of date, keep going past the link steps that our empty objects break). */
function discoveryCommand(command: string): string {
  return /^\s*(\S*\/)?g?make(\s|$)/.test(command) ? command.replace(/make/, "make -B -k") : command;
}

/** Reads `compile_commands.json` (the form CMake and bear write) into units. */
async function fromCompileCommands(root: string, file: string): Promise<CompileUnit[]> {
  let entries: unknown;
  try {
    entries = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw ebuild(`cannot read ${file}: ${(err as Error).message}`, err);
  }
  if (!Array.isArray(entries)) throw ebuild(`${file} is not a JSON array of compile commands`);
  const units: CompileUnit[] = [];
  for (const e of entries as { directory?: unknown; arguments?: unknown; command?: unknown }[]) {
    const argv = Array.isArray(e.arguments)
      ? e.arguments.map(String)
      : typeof e.command === "string"
        ? e.command.split(/\s+/).filter((a) => a !== "")
        : null;
    if (!argv || typeof e.directory !== "string" || argv.length === 0) {
      throw ebuild(`${file}: every entry needs a directory and arguments (or command)`);
    }
    const dir = path.resolve(root, e.directory);
    units.push(...unitsOf(root, dir, path.basename(argv[0] as string), argv.slice(1)));
  }
  return units;
}

/**
 * Learns every unit's command: from `compile_commands.json` at the root when there is one (paths
 * in it point into `sourceDir`), else by running `command` in `copy` with the wrappers first in PATH.
 */
export async function discoverUnits(opts: {
  sourceDir: string;
  copy: string;
  work: string;
  command: string;
  timeoutMs: number;
  signal?: AbortSignal;
}): Promise<CompileUnit[]> {
  const db = path.join(opts.sourceDir, "compile_commands.json");
  if (
    await access(db, constants.R_OK).then(
      () => true,
      () => false,
    )
  ) {
    return fromCompileCommands(opts.sourceDir, db);
  }
  const wrappers = path.join(opts.work, "wrappers");
  const records = path.join(opts.work, "records");
  await mkdir(records, { recursive: true });
  await writeWrappers(wrappers, records);
  const env = { ...process.env, PATH: `${wrappers}:${process.env.PATH ?? "/usr/bin:/bin"}` };
  const run = await runShell(discoveryCommand(opts.command), opts.copy, env, opts.timeoutMs, opts.signal).catch(
    (err: unknown) => {
      throwIfAborted(opts.signal);
      throw ebuild(`cannot run the build command ${JSON.stringify(opts.command)}: ${(err as Error).message}`, err);
    },
  );
  throwIfAborted(opts.signal);
  const units: CompileUnit[] = [];
  for (const name of (await readdir(records)).sort()) {
    const fields = (await readFile(path.join(records, name), "utf8")).split("\0");
    fields.pop();
    const [cwd, compiler, ...argv] = fields;
    if (cwd === undefined || compiler === undefined) continue;
    // Paths the build wrote into the copy are paths of the source tree.
    const mapped = argv.map((a) => a.split(opts.copy).join(opts.sourceDir));
    units.push(...unitsOf(opts.sourceDir, cwd.split(opts.copy).join(opts.sourceDir), compiler, mapped));
  }
  if (units.length === 0) {
    throw ebuild(
      `the build command ${JSON.stringify(opts.command)} compiled nothing through cc/gcc/g++/c++/clang/clang++ found in PATH (exit ${run.code}): ${run.output.trim().slice(-2000)}`,
    );
  }
  return units;
}

/** Copies the source tree (timestamps kept, so an incremental build stays incremental). */
export async function copyTree(from: string, to: string): Promise<void> {
  await cp(from, to, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
}

/** The unit's arguments for a tree at `root` instead of `sourceDir` (which `__FILE__` keeps naming). */
function argsIn(unit: CompileUnit, sourceDir: string, root: string): string[] {
  if (root === sourceDir) return [...unit.args, unit.sourceArg];
  const moved = [...unit.args, unit.sourceArg].map((a) => a.split(sourceDir).join(root));
  return [`-ffile-prefix-map=${root}=${sourceDir}`, ...moved];
}

/** The files (relative to the tree) a unit's preprocessor reads. */
export function unitDependencies(unit: CompileUnit, sourceDir: string, signal?: AbortSignal): Promise<string[]> {
  const root = sourceDir;
  return new Promise((resolve, reject) => {
    execFile(
      unit.compiler,
      ["-M", "-MG", ...argsIn(unit, sourceDir, root)],
      { cwd: path.join(root, unit.dir), maxBuffer: 16 * 1024 * 1024, ...(signal ? { signal } : {}) },
      (err, stdout) => {
        if (err) return reject(ebuild(`${unit.compiler} -M ${unit.source} failed: ${err.message}`, err));
        const deps = stdout
          .replace(/\\\n/g, " ")
          .replace(/^[^:]*:/, "")
          .split(/\s+/)
          .filter((d) => d !== "")
          .map((d) => path.relative(root, path.resolve(root, unit.dir, d)));
        resolve(deps);
      },
    );
  });
}

/** Compiles a unit from the tree at `root` (the source tree or its patched copy) into `out`, with the section flags. ECOMPILE carries the compiler's message. */
export function compileUnit(
  unit: CompileUnit,
  sourceDir: string,
  root: string,
  out: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      unit.compiler,
      [...SECTION_FLAGS, "-c", ...argsIn(unit, sourceDir, root), "-o", out],
      {
        cwd: path.join(root, unit.dir),
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 4 * 1024 * 1024,
        ...(signal ? { signal } : {}),
      },
      (err, _stdout, stderr) => {
        if (!err) return resolve();
        reject(
          new BundleError(
            "ECOMPILE",
            `${unit.compiler} ${unit.source} failed: ${(stderr || err.message).trim().slice(0, 8192)}`,
            { path: unit.source },
            { cause: err },
          ),
        );
      },
    );
  });
}
