/** `hotpatch elf FILE`: what hotpatch sees in a binary (build-id, type, symbols). */
import type { Command } from "commander";
import { type ElfSymbol, readElf } from "../../native/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput } from "../output.js";

interface ElfOptions {
  json?: boolean;
  symbols?: string;
}

function describeSymbol(s: ElfSymbol): string {
  const where = s.file ? ` (${s.file})` : "";
  return `  0x${s.value.toString(16).padStart(8, "0")} ${String(s.size).padStart(6)} ${s.kind.padEnd(8)} ${s.binding.padEnd(6)} ${s.table.padEnd(6)} ${s.name}${where}`;
}

export function registerElf(program: Command): void {
  program
    .command("elf")
    .description("show what hotpatch sees in an ELF file: type, build-id, segments and symbols")
    .argument("<file>", "executable or shared library")
    .option("--symbols <substring>", "list the defined symbols whose name contains SUBSTRING ('' for all)")
    .option("--json", "print one JSON document")
    .action(async (file: string, opts: ElfOptions) => {
      const out = createOutput(opts.json === true);
      try {
        const info = await readElf(file);
        const wanted =
          opts.symbols === undefined
            ? []
            : info.symbols.filter((s) => s.defined && s.name.includes(opts.symbols ?? ""));
        if (out.json) {
          const { symbols, ...rest } = info;
          out.record({ ...rest, symbolCount: symbols.length, symbols: wanted });
        } else {
          out.line(`${info.path}: ELF${info.bits} ${info.type}, machine ${info.machine}`);
          out.line(`build-id: ${info.buildId ?? "(none)"}`);
          if (info.debugLink) out.line(`debug link: ${info.debugLink}`);
          const symtab = info.symbols.filter((s) => s.table === "symtab").length;
          out.line(`symbols: ${symtab} in .symtab, ${info.symbols.length - symtab} in .dynsym`);
          for (const s of wanted) out.line(describeSymbol(s));
        }
        process.exitCode = ExitCode.Ok;
      } catch (err) {
        process.exitCode = out.fail(err);
      }
    });
}
