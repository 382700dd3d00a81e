/** Per-process results of apply/revert, for humans and for `--json`. */
import type { OutcomeCounts, ProcessOutcome } from "../../local/index.js";
import type { Output } from "../output.js";

export function printOutcomes(
  out: Output,
  verb: string,
  id: string,
  results: ProcessOutcome[],
  counts: OutcomeCounts,
): void {
  for (const r of results) {
    out.record({ type: "process", ...r });
    const code = "code" in r ? ` [${r.code}]` : "";
    out.line(`${String(r.pid).padStart(7)}  ${r.outcome.padEnd(7)}${code}  ${r.detail}`);
  }
  out.record({ type: "summary", verb, id, processes: results.length, ...counts });
  out.line(
    `${verb} ${id}: ${results.length} process(es): ${counts.done} done, ${counts.already} already, ` +
      `${counts.skipped} skipped, ${counts.failed} failed`,
  );
}
