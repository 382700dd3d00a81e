/** `hotpatch inspect BUNDLE`: what a bundle will do, and whether its hash, signature and target check out. */
import type { Command } from "commander";
import { BundleError, type InspectReport, inspectBundle } from "../../bundle/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput, type Output } from "../output.js";

interface InspectCliOptions {
  trustedKey?: string[];
  target?: string;
  json?: boolean;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function describeSignature(r: InspectReport, keysGiven: boolean): string {
  const s = r.signature;
  switch (s.state) {
    case "unsigned":
      return keysGiven ? "UNSIGNED, but trusted keys were given" : "unsigned";
    case "unchecked":
      return `signed by key ${s.keyId}, not checked (give --trusted-key PUBKEY)`;
    case "verified":
      return `verified, key ${s.keyId}`;
    case "invalid":
      return `INVALID: ${s.reason}`;
  }
}

/** The first failed check as a coded error, for the error line and the exit code. */
function firstFailure(r: InspectReport, keysGiven: boolean, origin: string): BundleError | null {
  if (!r.hash.ok) {
    return new BundleError(
      "EBUNDLE_HASH",
      `${origin}: patch.so has sha256 ${r.hash.actual} but the manifest says ${r.hash.expected}`,
    );
  }
  if (r.signature.state === "invalid") return new BundleError("EBUNDLE_SIGNATURE", r.signature.reason);
  if (r.signature.state === "unsigned" && keysGiven)
    return new BundleError("EBUNDLE_UNSIGNED", `${origin} is not signed`);
  if (r.target && !r.target.ok) {
    return new BundleError(
      "EBUILDID",
      `${r.target.path} has build-id ${r.target.buildId ?? "(none)"} but the bundle is for ${r.manifest.target.buildId}`,
    );
  }
  return null;
}

function printHuman(out: Output, r: InspectReport, origin: string, keysGiven: boolean): void {
  const m = r.manifest;
  out.line(`bundle     ${m.id} (${origin})`);
  out.line(`target     ${m.target.path ?? "(path not recorded)"} (${m.target.kind})`);
  out.line(`build-id   ${m.target.buildId}`);
  out.line(`loader     ${m.loader}`);
  out.line("functions");
  for (const fn of m.functions) out.line(`  ${fn.symbol} -> ${fn.replacement} (${fn.consistency ?? "strict"})`);
  out.line(
    `patch.so   ${r.hash.size} bytes, sha256 ${r.hash.actual} ${r.hash.ok ? "ok" : `MISMATCH (manifest says ${r.hash.expected})`}`,
  );
  out.line(`signature  ${describeSignature(r, keysGiven)}`);
  if (m.createdAt) out.line(`created    ${m.createdAt}`);
  if (m.source) out.line(`source     ${m.source.file} (${m.source.compiler}; ${m.source.flags.join(" ")})`);
  if (r.target)
    out.line(
      `checked    ${r.target.path}: build-id ${r.target.buildId ?? "(none)"} ${r.target.ok ? "matches" : "DOES NOT MATCH"}`,
    );
}

export function registerInspect(program: Command): void {
  program
    .command("inspect")
    .description("show what a bundle will do, and check its hash, signature and (with --target) build-id")
    .argument("<bundle>", "bundle directory or .tar")
    .option("--trusted-key <pubkey>", "public key (PEM file) whose signature is trusted; repeatable", collect)
    .option("--target <file>", "check that this ELF file has the bundle's build-id")
    .option("--json", "print one JSON document")
    .action(async (bundle: string, opts: InspectCliOptions) => {
      const out = createOutput(opts.json === true);
      try {
        const trustedKeys = opts.trustedKey ?? [];
        const keysGiven = trustedKeys.length > 0;
        const report = await inspectBundle(bundle, {
          trustedKeys,
          ...(opts.target !== undefined ? { elfPath: opts.target } : {}),
        });
        out.record({ bundle, ...report });
        printHuman(out, report, bundle, keysGiven);
        const failure = firstFailure(report, keysGiven, bundle);
        process.exitCode = failure ? out.fail(failure) : ExitCode.Ok;
      } catch (err) {
        process.exitCode = out.fail(err);
      }
    });
}
