/** How commands talk to the user: human text, or one JSON document per line with `--json`. */
import { codeOf } from "../../common/index.js";
import { ExitCode } from "./exit_codes.js";

/** Where a command writes; tests give their own streams. */
export interface Output {
  /** Whether `--json` was given. */
  json: boolean;
  /** Writes one line of human text to stdout (ignored in JSON mode). */
  line(text: string): void;
  /** Writes one JSON value on one line to stdout (only in JSON mode). */
  record(value: unknown): void;
  /** True when stdout is a terminal and output is human: live views redraw in place. */
  live: boolean;
  /** Replaces the block of lines drawn last by `lines` (live mode only; plain mode ignores it). */
  redraw(lines: string[]): void;
  /** Reports an error on stderr (as JSON in JSON mode) and returns the exit code to use (or `exitCode`). */
  fail(err: unknown, exitCode?: ExitCode): ExitCode;
}

// bigint addresses print as hex strings in JSON, which is also how operators read them.
function replacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? `0x${value.toString(16)}` : value;
}

export function toJson(value: unknown): string {
  return JSON.stringify(value, replacer);
}

export function createOutput(json: boolean, stdout = process.stdout, stderr = process.stderr): Output {
  const live = !json && (stdout as { isTTY?: boolean }).isTTY === true;
  let drawn = 0;
  return {
    json,
    live,
    line(text) {
      if (json) return;
      // A plain line goes above a live block: clear the block, write, and let the next redraw repaint.
      if (drawn > 0) stdout.write(`\x1b[${drawn}F\x1b[J`);
      drawn = 0;
      stdout.write(`${text}\n`);
    },
    redraw(lines) {
      if (!live) return;
      stdout.write(`${drawn > 0 ? `\x1b[${drawn}F\x1b[J` : ""}${lines.map((l) => `${l}\n`).join("")}`);
      drawn = lines.length;
    },
    record(value) {
      if (json) stdout.write(`${toJson(value)}\n`);
    },
    fail(err, exitCode) {
      // Every hotpatch error class carries a stable string code; anything else is our own bug.
      const code = codeOf(err);
      const message = err instanceof Error ? err.message : String(err);
      if (json) stderr.write(`${toJson({ error: { code, message } })}\n`);
      else stderr.write(`hotpatch: error [${code}]: ${message}\n`);
      if (exitCode !== undefined) return exitCode;
      return code === "EINTERNAL" ? ExitCode.Internal : ExitCode.Failed;
    },
  };
}
