/** `hotpatch build`: compile a fix into a patch bundle after checking it against the target binary. */
import { type Command, Option } from "commander";
import { BundleError, buildBundle, type Consistency, type LoaderKind } from "../../../bundle/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput } from "../output.js";

interface BuildCliOptions {
  target: string;
  source: string;
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

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerBuild(program: Command): void {
  program
    .command("build")
    .description("compile FIX.c/FIX.cc into a patch bundle, checking every symbol against the target first")
    .requiredOption("--target <file>", "the executable or shared library to patch")
    .requiredOption("--source <file>", "C (.c) or C++ (.cc, .cpp) source of the replacement functions")
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
        const result = await buildBundle({
          target: opts.target,
          source: opts.source,
          functions: opts.function ?? [],
          cflags: (opts.cflags ?? "").split(/\s+/).filter((f) => f !== ""),
          loader: opts.loader,
          out: opts.out,
          tar: opts.tar === true,
          ...(opts.id !== undefined ? { id: opts.id } : {}),
          ...(opts.consistency !== undefined ? { consistency: opts.consistency } : {}),
          ...(opts.sign !== undefined ? { signKey: opts.sign } : {}),
        });
        const m = result.manifest;
        out.record({ bundle: result.dir ?? result.tar, ...result });
        out.line(`built bundle ${m.id} in ${result.dir ?? result.tar}`);
        out.line(`  target    ${m.target.path} (${m.target.kind}, build-id ${m.target.buildId})`);
        out.line(`  loader    ${m.loader}`);
        for (const fn of m.functions)
          out.line(`  replaces  ${fn.symbol} -> ${fn.replacement}${fn.consistency ? ` (${fn.consistency})` : ""}`);
        out.line(`  signed    ${result.signedBy ? `by key ${result.signedBy}` : "no (use --sign KEYFILE)"}`);
        for (const w of result.warnings) out.line(`warning: ${w}`);
        process.exitCode = ExitCode.Ok;
      } catch (err) {
        const code = out.fail(err);
        process.exitCode = err instanceof BundleError && err.code === "EBAD_ARGUMENT" ? ExitCode.Usage : code;
      }
    });
}
