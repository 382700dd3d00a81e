/**
 * Bulk: apply a 1-function patch to every process of one executable on this host (1,000 forked
 * copies of a small service), processes patched in parallel; against the DESIGN target of
 * 1,000 processes in < 1 s. Baseline in the same run: the bare stop/resume floor of all of them.
 */

import { runEach } from "../local/index.js";
import { applyPatchToMany, measureStopFloor, revertPatch } from "../native/index.js";
import { compileFixture, startFixture } from "../test/helpers/fixtures.js";
import { printTable } from "./stats.js";

const COUNT = Number(process.env.HOTPATCH_BULK_COUNT ?? 1000);
const PARALLEL = 8;
const binary = await compileFixture("c/fleet.c", ["-O2", "-fPIE", "-pie"]);
const patch = await compileFixture("c/bench_patch.c", ["-O2", "-shared", "-fPIC"]);
const fleet = await startFixture(binary, [String(COUNT)]);
try {
  await fleet.nextLine(/^all /, 60_000);
  const pids = [...fleet.output().matchAll(/^child (\d+)$/gm)].map((m) => Number(m[1]));
  const spec = { id: "bulk", soPath: patch, functions: [{ symbol: "compute", replacement: "compute_same" }] };

  let t = performance.now();
  await runEach(pids, PARALLEL, async (pid) => {
    await measureStopFloor(pid);
    return { pid, outcome: "done", pauseUs: 0, detail: "" };
  });
  const floorMs = performance.now() - t;

  t = performance.now();
  const applied = await applyPatchToMany(pids, spec, { parallel: PARALLEL });
  const applyMs = performance.now() - t;
  const failed = applied.filter((r) => r.outcome === "failed");

  t = performance.now();
  await runEach(pids, PARALLEL, async (pid) => {
    await revertPatch(pid, "bulk", { unload: true });
    return { pid, outcome: "done", pauseUs: 0, detail: "" };
  });
  const revertMs = performance.now() - t;

  process.stdout.write(
    `bulk over ${pids.length} processes of one executable, ${PARALLEL} in parallel (libuv pool ${process.env.UV_THREADPOOL_SIZE ?? 4})\n`,
  );
  printTable(
    ["what", "total ms", "per process µs", "vs floor"],
    [
      ["stop/resume floor", floorMs.toFixed(0), ((floorMs * 1000) / pids.length).toFixed(0), "1.00"],
      [
        "apply (load + activate)",
        applyMs.toFixed(0),
        ((applyMs * 1000) / pids.length).toFixed(0),
        (applyMs / floorMs).toFixed(2),
      ],
      [
        "revert --unload",
        revertMs.toFixed(0),
        ((revertMs * 1000) / pids.length).toFixed(0),
        (revertMs / floorMs).toFixed(2),
      ],
    ],
  );
  if (failed.length > 0) process.stdout.write(`FAILED in ${failed.length}: ${JSON.stringify(failed[0])}\n`);
} finally {
  await fleet.kill();
}
