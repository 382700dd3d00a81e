/**
 * Engine pause and call cost, each against a baseline from the same run:
 * - the bare ptrace stop/resume floor of a target vs. the pause of activating a 1-function patch
 *   in that same target, p50 and p99, with 2 and 16 threads (all but one busy calling compute());
 * - ns per call of compute() unpatched vs. patched (replacement with the same body).
 */
import {
  activatePatch,
  applyPatch,
  deactivatePatch,
  loadPatch,
  measureStopFloor,
  revertPatch,
} from "../native/index.js";
import { compileFixture, startFixture } from "../test/helpers/fixtures.js";
import { printTable, quantile } from "./stats.js";

const ROUNDS = 300;
const binary = await compileFixture("c/bench_calls.c", ["-O2", "-fPIE", "-pie", "-pthread"]);
const patch = await compileFixture("c/bench_patch.c", ["-O2", "-shared", "-fPIC"]);
const spec = { id: "bench", soPath: patch, functions: [{ symbol: "compute", replacement: "compute_same" }] };

const rows: (string | number)[][] = [];
for (const threads of [2, 16]) {
  const target = await startFixture(binary, ["load", String(threads)]);
  try {
    await loadPatch(target.pid, spec, { consistency: "entry" });
    const floor: number[] = [];
    const activate: number[] = [];
    // Interleaved, so that both see the same machine load.
    for (let i = 0; i < ROUNDS; i++) {
      floor.push(await measureStopFloor(target.pid));
      activate.push((await activatePatch(target.pid, "bench")).pauseUs);
      await deactivatePatch(target.pid, "bench");
    }
    const f50 = quantile(floor, 0.5);
    const a50 = quantile(activate, 0.5);
    rows.push([threads, ROUNDS, f50, quantile(floor, 0.99), a50, quantile(activate, 0.99), (a50 / f50).toFixed(2)]);
    await revertPatch(target.pid, "bench", { unload: true });
  } finally {
    await target.kill();
  }
}
process.stdout.write("pause (µs) of a 1-function activation (consistency entry) vs. the bare stop/resume floor\n");
printTable(["threads", "rounds", "floor p50", "floor p99", "activate p50", "activate p99", "p50 ratio"], rows);

const costTarget = await startFixture(binary, ["cost"]);
try {
  const readBatches = async (n: number) => {
    const out: [number, number][] = [];
    for (let i = 0; i < n; i++) {
      const [, tiny, heavy] = (await costTarget.nextLine(/^ns /)).split(" ").map(Number);
      out.push([tiny as number, heavy as number]);
    }
    return out;
  };
  await readBatches(2); // warm-up
  const before = await readBatches(15);
  await applyPatch(costTarget.pid, {
    id: "cost",
    soPath: patch,
    functions: [
      { symbol: "compute", replacement: "compute_same" },
      { symbol: "compute_heavy", replacement: "compute_heavy_same" },
    ],
  });
  await readBatches(1); // the batch the patch landed in
  const after = await readBatches(15);
  const row = (name: string, i: 0 | 1) => {
    const b = quantile(
      before.map((x) => x[i]),
      0.5,
    );
    const a = quantile(
      after.map((x) => x[i]),
      0.5,
    );
    return [name, b.toFixed(3), a.toFixed(3), (a / b).toFixed(3)];
  };
  process.stdout.write("\ncost of a call (ns per call, median of 15 batches), replacement identical to the original\n");
  printTable(
    ["function", "unpatched", "patched", "ratio"],
    [row("compute (3 instructions)", 0), row("compute_heavy (48-step loop)", 1)],
  );
} finally {
  await costTarget.kill();
}
