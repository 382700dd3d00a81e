/**
 * A patch's undefined symbols bind where the target's own dynamic linker binds them: when two
 * libraries define the same name, the first one in ld.so's search order wins (an LD_PRELOAD, the
 * first of the linked libraries), not the one mapped at the lowest address; a library dlopen'ed
 * later comes after those loaded at start-up.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { applyPatch, readMaps, readTargetObjects, revertPatch } from "../../native/index.js";
import { compileFixture, patchMemfdPath, type RunningFixture, startFixture } from "../helpers/fixtures.js";

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

describe("a static program", () => {
  let target: RunningFixture;
  before(async () => {
    target = await startFixture(
      await compileFixture(["c/stacked_statics_b.c", "c/stacked_statics_a.c"], ["-O2", "-static"]),
    );
  });
  after(async () => target?.kill());

  it("has no dynamic linker list: the engine says so and still resolves in the executable", async () => {
    const { objects, searchOrder } = await readTargetObjects(target.pid);
    assert.equal(searchOrder.source, "maps");
    assert.match(searchOrder.source === "maps" ? searchOrder.reason : "", /static program/);
    assert.equal(objects[0]?.executable, true);
    await applyPatch(target.pid, {
      id: "static",
      soPath: await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC", "-fno-asynchronous-unwind-tables"]),
      functions: [{ symbol: "stacked_statics_b.c:helper", replacement: "helper_v2" }],
    });
    await target.nextLine(/^answers /);
    assert.equal(await target.nextLine(/^answers /), "answers a=101 b=901");
    await revertPatch(target.pid, "static");
  });

  it("registers a patch's unwind tables with the unwinder inside the executable, and takes them back", async () => {
    // The unwinder is part of the executable, where the target's thread always is: only libgcc's
    // frame registry, found by the executable's symbols, must be free of threads.
    const withTables = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    await applyPatch(target.pid, {
      id: "static-eh",
      soPath: withTables,
      functions: [{ symbol: "stacked_statics_b.c:helper", replacement: "helper_v2" }],
    });
    assert.ok(
      (await readMaps(target.pid)).some((m) => m.path === patchMemfdPath("static-eh")),
      "the patch is mapped",
    );
    await target.nextLine(/^answers /);
    assert.equal(await target.nextLine(/^answers /), "answers a=101 b=901");
    await revertPatch(target.pid, "static-eh", { unload: true });
    await target.nextLine(/^answers /);
    assert.equal(await target.nextLine(/^answers /), "answers a=101 b=201");
    assert.ok(
      !(await readMaps(target.pid)).some((m) => m.path === patchMemfdPath("static-eh")),
      "no mapping of it is left",
    );
  });
});

describe("a dynamic program", () => {
  let target: RunningFixture;
  before(async () => {
    target = await startFixture(await compileFixture(source, [...flags, libA, libB]));
  });
  after(async () => target?.kill());

  it("lists its objects in ld.so's order: the executable, then its libraries as loaded", async () => {
    const { objects, searchOrder } = await readTargetObjects(target.pid);
    assert.deepEqual(searchOrder, { source: "link_map" });
    assert.equal(objects[0]?.executable, true);
    assert.equal(objects[0]?.linkMapIndex, 0);
    const paths = objects.map((o) => o.path);
    assert.ok(
      paths.indexOf(libA) < paths.indexOf(libB) && paths.indexOf(libB) < paths.findIndex((p) => /libc\.so/.test(p)),
    );
    const indexes = objects.map((o) => o.linkMapIndex).filter((i) => i !== null);
    assert.deepEqual(
      indexes,
      [...indexes].sort((a, b) => a - b),
    );
  });
});
