/**
 * A patch's undefined symbols bind where the target's own dynamic linker binds them: when two
 * libraries define the same name, the first one in ld.so's search order wins (an LD_PRELOAD, the
 * first of the linked libraries), not the one mapped at the lowest address; a library dlopen'ed
 * later comes after those loaded at start-up.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { applyPatch, readMaps } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

async function reading(t: RunningFixture): Promise<{ which: number; probe: number }> {
  await t.nextLine(/^which=/); // may predate the last operation
  const m = /^which=(\d+) probe=(\d+)$/.exec(await t.nextLine(/^which=/));
  assert.ok(m);
  return { which: Number(m[1]), probe: Number(m[2]) };
}

/** Lowest address a file is mapped at in the process. */
async function mappedAt(pid: number, file: string): Promise<bigint> {
  const starts = (await readMaps(pid)).filter((m) => m.path === file).map((m) => m.start);
  assert.ok(starts.length > 0, `${file} is mapped`);
  return starts.sort((a, b) => (a < b ? -1 : 1))[0] ?? 0n;
}

let libA: string;
let libB: string;
let patch: string;
const source = "c/interpose_target.c";
const flags = ["-O2", "-fPIE", "-pie", "-Wl,--no-as-needed"];

before(async () => {
  libA = await compileFixture("c/libwhich.c", ["-O2", "-shared", "-fPIC", "-DWHICH=1"]);
  libB = await compileFixture("c/libwhich.c", ["-O2", "-shared", "-fPIC", "-DWHICH=2"]);
  patch = await compileFixture("c/interpose_patch.c", ["-O2", "-shared", "-fPIC"]);
});

const cases: {
  name: string;
  start: () => Promise<RunningFixture>;
  /** The library whose which_lib() the target calls. */
  used: () => string;
  other: () => string;
}[] = [
  {
    name: "an LD_PRELOAD'd library interposes a linked one",
    start: async () => startFixture(await compileFixture(source, [...flags, libB]), [], 10_000, { LD_PRELOAD: libA }),
    used: () => libA,
    other: () => libB,
  },
  {
    name: "the first of two linked libraries wins",
    start: async () => startFixture(await compileFixture(source, [...flags, libA, libB])),
    used: () => libA,
    other: () => libB,
  },
  {
    name: "a library dlopen'ed RTLD_GLOBAL comes after the ones loaded at start-up",
    start: async () => startFixture(await compileFixture(source, [...flags, libB]), [libA]),
    used: () => libB,
    other: () => libA,
  },
];

for (const c of cases) {
  describe(c.name, () => {
    let target: RunningFixture;
    before(async () => {
      target = await c.start();
    });
    after(async () => target?.kill());

    it("the patch calls the definition the target itself calls", async () => {
      const expected = c.used() === libA ? 1 : 2;
      assert.deepEqual(await reading(target), { which: expected, probe: 0 });
      // Address order disagrees with ld.so's order here (mmap hands out addresses top-down), which
      // is what made a search in /proc/PID/maps order pick the other library.
      assert.ok((await mappedAt(target.pid, c.used())) > (await mappedAt(target.pid, c.other())));
      await applyPatch(target.pid, {
        id: "which",
        soPath: patch,
        functions: [{ symbol: "probe", replacement: "probe_v2" }],
      });
      assert.deepEqual(await reading(target), { which: expected, probe: 100 + expected });
    });
  });
}
