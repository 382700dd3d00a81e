/** Runs one operation on many processes with bounded parallelism and collects per-process outcomes. */

import type { PatchedFunction } from "../native/index.js";

/** A function an apply redirected, as `--json` reports it. */
export interface AppliedFunction {
  /** Old function, as named in the bundle. */
  symbol: string;
  /** Its entry in the process. */
  address: bigint;
  /** Where it now jumps. */
  replacement: bigint;
  /** The jump written: 5-byte rel32, 5-byte rel32 through a near trampoline, or 14-byte absolute. */
  jump: PatchedFunction["jump"];
}

/** What happened in one process. */
export type ProcessOutcome =
  /** The operation changed the process; `functions` names what now jumps where (apply). */
  | { pid: number; outcome: "done"; pauseUs: number; detail: string; functions?: AppliedFunction[] }
  /** Nothing to do: the process was already in the asked state. */
  | { pid: number; outcome: "already"; detail: string }
  /** Not touched, for the reason given (e.g. another build of the executable). */
  | { pid: number; outcome: "skipped"; code: string; detail: string }
  /** The operation failed; the process was left as it was. */
  | { pid: number; outcome: "failed"; code: string; detail: string };

/** Counts of outcomes, for the summary line. */
export interface OutcomeCounts {
  done: number;
  already: number;
  skipped: number;
  failed: number;
}

export function countOutcomes(results: ProcessOutcome[]): OutcomeCounts {
  const counts: OutcomeCounts = { done: 0, already: 0, skipped: 0, failed: 0 };
  for (const r of results) counts[r.outcome]++;
  return counts;
}

/**
 * Calls `op` for every pid, at most `parallel` at a time (the engine runs each on a libuv worker
 * thread, so this is real parallelism). Results come back in pid order.
 */
export async function runEach(
  pids: number[],
  parallel: number,
  op: (pid: number) => Promise<ProcessOutcome>,
): Promise<ProcessOutcome[]> {
  const results: ProcessOutcome[] = new Array(pids.length);
  let next = 0;
  const worker = async () => {
    while (next < pids.length) {
      const i = next++;
      results[i] = await op(pids[i] as number);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, pids.length) }, worker));
  return results;
}
