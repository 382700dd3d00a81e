/**
 * `hotpatch build`: make a patch bundle from a diff and the program's own build (the changed
 * functions found by comparing the builds), or from a fix file naming its functions.
 */
import { type Command, Option } from "commander";
import {
  type BuildResult,
  BundleError,
  buildBundle,
  buildBundleFromDiff,
  type Consistency,
  type DiffBuildResult,
  type LoaderKind,
} from "../../bundle/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput, type Output } from "../output.js";

interface BuildCliOptions {
  target: string;
  source?: string;
  sourceDir?: string;
  diff?: string;
  buildCommand?: string;
  function?: string[];
  cflags?: string;
  id?: string;
  loader: LoaderKind;
  consistency?: Consistency;
  sign?: string;
  out: string;
  tar?: boolean;
  json?: boolean;
}

const ms = (v: number) => `${Math.round(v)} ms`;

/** Prints what either kind of build made. */
function printResult(out: Output, result: BuildResult): void {
  const m = result.manifest;
  out.record({ bundle: result.dir ?? result.tar, ...result });
  out.line(`built bundle ${m.id} in ${result.dir ?? result.tar}`);
  out.line(`  target    ${m.target.path} (${m.target.kind}, build-id ${m.target.buildId})`);
  out.line(`  loader    ${m.loader}`);
  const diff = "functions" in result && "timings" in result ? (result as DiffBuildResult) : null;
  if (diff) {
    out.line(
      `  compiled  ${diff.units.join(", ")} twice; ${diff.provenFunctions} functions of the rebuilt original match the target`,
    );
    for (const f of diff.functions) {
      out.line(`  ${f.replaces ? `replaces  ${f.replaces} -> patch` : `adds      ${f.function}`}: ${f.why}`);
    }
    for (const f of diff.lineOnly) out.line(`  not patched  ${f}: only __LINE__ values changed`);
    const t = diff.timings;
    out.line(
      `  time      build ${ms(t.buildMs)}, compare ${ms(t.compareMs)}, link ${ms(t.linkMs)}, write ${ms(t.writeMs)}`,
    );
  } else {
    for (const fn of m.functions)
      out.line(`  replaces  ${fn.symbol} -> ${fn.replacement}${fn.consistency ? ` (${fn.consistency})` : ""}`);
  }
  out.line(`  signed    ${result.signedBy ? `by key ${result.signedBy}` : "no (use --sign KEYFILE)"}`);
  for (const w of result.warnings) out.line(`warning: ${w}`);
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerBuild(program: Command): void {
  program
    .command("build")
    .description(
      "make a patch bundle: from a diff and the program's own build (--source-dir, --diff), or from a fix file (--source, --function)",
    )
    .requiredOption("--target <file>", "the executable or shared library to patch")
    .option("--source-dir <dir>", "the source tree the target was built from (with --diff)")
    .option("--diff <file>", "the fix as a unified diff against --source-dir (git diff, diff -u)")
    .option("--build-command <cmd>", "the command that built the target, run in --source-dir (default: make)")
    .option("--source <file>", "C (.c) or C++ (.cc, .cpp) source of the replacement functions")
    .option(
      "--function <old[=new]>",
      "function to replace (file.c:name for a static), and its replacement (default: same name); repeatable",
      collect,
    )
    .option("--cflags <flags>", "extra compiler flags, split on spaces (after -shared -fPIC -O2)")
    .option("--id <id>", "patch id (letters, digits, . _ -); default: source name and patch hash")
    .addOption(
      new Option("--loader <kind>", "how the engine loads the patch")
        .choices(["mmap", "dlopen", "auto"])
        .default("auto"),
    )
    .addOption(
      new Option("--consistency <level>", "safety check for every function (engine default: strict)").choices([
        "strict",
        "entry",
      ]),
    )
    .option("--sign <keyfile>", "sign the manifest with this private key (from hotpatch keygen)")
    .requiredOption("--out <path>", "bundle directory to create (with --tar: the .tar file)")
    .option("--tar", "write one .tar file instead of a directory")
    .option("--json", "print one JSON document")
    .action(async (opts: BuildCliOptions) => {
      const out = createOutput(opts.json === true);
      try {
        const fromDiff = opts.diff !== undefined || opts.sourceDir !== undefined;
        if (fromDiff && (opts.source !== undefined || opts.function !== undefined || opts.cflags !== undefined)) {
          throw new BundleError(
            "EBAD_ARGUMENT",
            "give either --source-dir and --diff, or --source and --function, not both",
          );
        }
        if (fromDiff && (opts.diff === undefined || opts.sourceDir === undefined)) {
          throw new BundleError("EBAD_ARGUMENT", "--diff and --source-dir go together");
        }
        if (!fromDiff && opts.source === undefined) {
          throw new BundleError(
            "EBAD_ARGUMENT",
            "give --source-dir DIR --diff FIX.diff, or --source FIX.c --function NAME",
          );
        }
        const common = {
          target: opts.target,
          loader: opts.loader,
          out: opts.out,
          tar: opts.tar === true,
          ...(opts.id !== undefined ? { id: opts.id } : {}),
          ...(opts.consistency !== undefined ? { consistency: opts.consistency } : {}),
          ...(opts.sign !== undefined ? { signKey: opts.sign } : {}),
        };
        const result = fromDiff
          ? await buildBundleFromDiff({
              ...common,
              sourceDir: opts.sourceDir as string,
              diff: opts.diff as string,
              ...(opts.buildCommand !== undefined ? { buildCommand: opts.buildCommand } : {}),
            })
          : await buildBundle({
              ...common,
              source: opts.source as string,
              functions: opts.function ?? [],
              cflags: (opts.cflags ?? "").split(/\s+/).filter((f) => f !== ""),
            });
        printResult(out, result);
        process.exitCode = ExitCode.Ok;
      } catch (err) {
        const code = out.fail(err);
        process.exitCode = err instanceof BundleError && err.code === "EBAD_ARGUMENT" ? ExitCode.Usage : code;
      }
    });
}
