/**
 * Finding the dead man's switches a managed agent leaves (agent/roles/dead_man_fence.ts): shells
 * named `hotpatch-fence` on their command line, which also holds the demote hook's arguments. A test
 * that SIGKILLs an active agent waits for its switch (and so its demote hook) to end before it
 * removes the files the hook writes.
 */
import { findByCommandLine } from "../../agent/procfs/processes.js";
import { waitFor } from "./agent_harness.js";

/** Pids of live switches whose command line contains `marker` (e.g. the test's temp folder). */
export function fenceSwitches(marker: string): Promise<number[]> {
  return findByCommandLine(
    (argv) => argv.some((a) => a.startsWith("hotpatch-fence")) && argv.join(" ").includes(marker),
  );
}

/** Waits until no switch mentioning `marker` is left; throws after `timeoutMs`. */
export async function switchesEnded(marker: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    `the dead man's switches of ${marker} to end`,
    async () => ((await fenceSwitches(marker)).length === 0 ? true : undefined),
    timeoutMs,
  );
}
