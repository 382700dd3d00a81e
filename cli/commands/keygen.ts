/** `hotpatch keygen --out PREFIX`: a new ed25519 key pair for signing bundles. */
import type { Command } from "commander";
import { writeKeyPair } from "../../bundle/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput } from "../output.js";

interface KeygenOptions {
  out: string;
  json?: boolean;
}

export function registerKeygen(program: Command): void {
  program
    .command("keygen")
    .description("make an ed25519 key pair for signing bundles: PREFIX.key (private, mode 0600) and PREFIX.pub")
    .requiredOption("--out <prefix>", "path prefix of the two key files")
    .option("--json", "print one JSON document")
    .action(async (opts: KeygenOptions) => {
      const out = createOutput(opts.json === true);
      try {
        const keys = await writeKeyPair(opts.out);
        out.record(keys);
        out.line(
          `private key ${keys.privateKeyPath} (keep it secret; sign with hotpatch build --sign ${keys.privateKeyPath})`,
        );
        out.line(`public key  ${keys.publicKeyPath} (give it to agents and inspect as a trusted key)`);
        out.line(`key id      ${keys.keyId}`);
        process.exitCode = ExitCode.Ok;
      } catch (err) {
        process.exitCode = out.fail(err);
      }
    });
}
