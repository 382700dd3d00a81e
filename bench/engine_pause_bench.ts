/**
 * Engine pause and call cost, each against a baseline from the same run:
 * - the bare ptrace stop/resume floor of a target vs. the pause of activating a 1-function patch
 *   in that same target, p50 and p99, with 2 and 16 threads (all but one busy calling compute()),
 *   with consistency strict (the default: exact unwinding of every thread) and entry;
 * - strict on a target whose idle stacks hold stale return addresses into the function (issue 12,
 *   case 1): stops needed, time to a successful apply, and the stall its threads observe;
 * - strict on a function that is always on the stack (case 2): the delay from its natural return
 *   to the first call of the replacement, as the target's own clock sees it;
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
import { compileFixture, type RunningFixture, startFixture } from "../test/helpers/fixtures.js";
import { printTable, quantile } from "./stats.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 300);
const binary = await compileFixture("c/bench_calls.c", ["-O2", "-fPIE", "-pie", "-pthread"]);
const patch = await compileFixture("c/bench_patch.c", ["-O2", "-shared", "-fPIC"]);
const fn = [{ symbol: "compute", replacement: "compute_same" }];

const rows: (string | number)[][] = [];
for (const threads of [2, 16]) {
  const target = await startFixture(binary, ["load", String(threads)]);
  try {
    // Two patches of the same function, one per consistency, activated in turn.
    await loadPatch(target.pid, { id: "entry", soPath: patch, functions: fn }, { consistency: "entry" });
    await loadPatch(target.pid, { id: "strict", soPath: patch, functions: fn });
    const floor: number[] = [];
    const pause = { entry: [] as number[], strict: [] as number[] };
    let strictStops = 0;
    // Interleaved, so that all see the same machine load.
    for (let i = 0; i < ROUNDS; i++) {
      floor.push(await measureStopFloor(target.pid));
      pause.entry.push((await activatePatch(target.pid, "entry")).pauseUs);
      await deactivatePatch(target.pid, "entry");
      const strict = await activatePatch(target.pid, "strict");
      pause.strict.push(strict.pauseUs);
      strictStops += strict.attempts;
      await deactivatePatch(target.pid, "strict");
    }
    const f50 = quantile(floor, 0.5);
    for (const mode of ["strict", "entry"] as const) {
      const a50 = quantile(pause[mode], 0.5);
      const stops = mode === "strict" ? (strictStops / ROUNDS).toFixed(2) : "1.00";
      rows.push([
        threads,
        mode,
        ROUNDS,
        f50,
        quantile(floor, 0.99),
        a50,
        quantile(pause[mode], 0.99),
        (a50 / f50).toFixed(2),
        stops,
      ]);
    }
    await revertPatch(target.pid, "entry", { unload: true });
    await revertPatch(target.pid, "strict", { unload: true });
  } finally {
    await target.kill();
  }
}
process.stdout.write("pause (µs) of a 1-function activation vs. the bare stop/resume floor of the same target\n");
printTable(
  [
    "threads",
    "consistency",
    "rounds",
    "floor p50",
    "floor p99",
    "activate p50",
    "activate p99",
    "p50 ratio",
    "stops/activation",
  ],
  rows,
);

const shapes = await compileFixture("c/strict_shapes.c", ["-O2", "-g", "-pthread"]);
const shapesPatch = await compileFixture("c/strict_shapes_patch.c", ["-O2", "-shared", "-fPIC"]);

/** The largest "lag <us>" of the next `n` tariff lines: the longest a worker's sleep overran. */
async function worstLag(target: RunningFixture, n: number): Promise<number> {
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, Number((await target.nextLine(/^tariff /)).split(" ")[3]));
  return worst;
}

const staleTarget = await startFixture(shapes, ["stale"]);
try {
  const STALE_ROUNDS = 30;
  const applyMs: number[] = [];
  const stops: number[] = [];
  const pauses: number[] = [];
  const lagDuring: number[] = [];
  const lagQuiet: number[] = [];
  const spec = { id: "stale", soPath: shapesPatch, functions: [{ symbol: "tariff", replacement: "tariff_v2" }] };
  for (let i = 0; i < STALE_ROUNDS; i++) {
    lagQuiet.push(await worstLag(staleTarget, 3));
    await staleTarget.nextLine(/^tariff /); // a window boundary right before the call
    const t0 = performance.now();
    const r = await applyPatch(staleTarget.pid, spec);
    applyMs.push(performance.now() - t0);
    stops.push(r.attempts);
    pauses.push(r.pauseUs);
    lagDuring.push(await worstLag(staleTarget, 3));
    await revertPatch(staleTarget.pid, "stale", { unload: true });
  }
  process.stdout.write(
    `\nstrict apply (load + activate) on a 2-thread target with stale return addresses into the function, ${STALE_ROUNDS} rounds\n`,
  );
  printTable(
    ["", "p50", "p99", "max"],
    [
      ["stops per activation", quantile(stops, 0.5), quantile(stops, 0.99), Math.max(...stops)],
      ["time to a successful apply (ms)", ...[0.5, 0.99, 1].map((q) => quantile(applyMs, q).toFixed(2))],
      ["longest stop of the apply (µs)", quantile(pauses, 0.5), quantile(pauses, 0.99), Math.max(...pauses)],
      [
        "worker stall, 60 ms around the apply (µs)",
        quantile(lagDuring, 0.5),
        quantile(lagDuring, 0.99),
        Math.max(...lagDuring),
      ],
      [
        "worker stall, 60 ms without an apply (µs)",
        quantile(lagQuiet, 0.5),
        quantile(lagQuiet, 0.99),
        Math.max(...lagQuiet),
      ],
    ],
  );
} finally {
  await staleTarget.kill();
}

const greetTarget = await startFixture(shapes, ["greet", "20"]);
try {
  const GREET_ROUNDS = 30;
  const delayMs: number[] = [];
  const pauses: number[] = [];
  await loadPatch(greetTarget.pid, {
    id: "greet",
    soPath: shapesPatch,
    functions: [{ symbol: "greet", replacement: "greet_v2" }],
  });
  for (let i = 0; i < GREET_ROUNDS; i++) {
    await greetTarget.nextLine(/^greet end /);
    pauses.push((await activatePatch(greetTarget.pid, "greet")).pauseUs);
    const first = await greetTarget.nextLine(/^greet v2 /);
    // The old greet's last return: the "end" line it printed just before returning.
    const out = greetTarget.output();
    const ends = out.slice(0, out.lastIndexOf(first)).match(/greet end \d+/g) ?? [];
    const end = Number((ends[ends.length - 1] ?? "").split(" ")[2]);
    delayMs.push((Number(first.split(" ")[2]) - end) / 1e6);
    await deactivatePatch(greetTarget.pid, "greet");
    await greetTarget.nextLine(/^greet v1 /);
  }
  process.stdout.write(
    `\nstrict switch of a function that is always on the stack (greet: print, sleep 20 ms, print), ${GREET_ROUNDS} rounds\n`,
  );
  printTable(
    ["", "p50", "p99", "max"],
    [
      [
        "natural return -> first call of the replacement (ms)",
        ...[0.5, 0.99, 1].map((q) => quantile(delayMs, q).toFixed(3)),
      ],
      ["longest stop of the activation (µs)", quantile(pauses, 0.5), quantile(pauses, 0.99), Math.max(...pauses)],
    ],
  );
} finally {
  await greetTarget.kill();
}

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
  await loadPatch(costTarget.pid, {
    id: "cost",
    soPath: patch,
    functions: [
      { symbol: "compute", replacement: "compute_same" },
      { symbol: "compute_heavy", replacement: "compute_heavy_same" },
    ],
  });
  await readBatches(2); // warm-up
  // Alternate unpatched and patched phases, so that both see the same machine; compare medians.
  const before: [number, number][] = [];
  const after: [number, number][] = [];
  for (let round = 0; round < 6; round++) {
    before.push(...(await readBatches(3)));
    await activatePatch(costTarget.pid, "cost");
    await readBatches(1); // the batch the switch landed in
    after.push(...(await readBatches(3)));
    await deactivatePatch(costTarget.pid, "cost");
    await readBatches(1);
  }
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
  process.stdout.write(
    "\ncost of a call (ns per call, medians of 18 interleaved batches each), replacement identical to the original\n",
  );
  printTable(
    ["function", "unpatched", "patched", "ratio"],
    [row("compute (3 instructions)", 0), row("compute_heavy (48-step loop)", 1)],
  );
} finally {
  await costTarget.kill();
}
