/**
 * The patch engine on real processes: an 8-thread target hammering compute() directly and through
 * a function pointer, patched by a real shared object that calls back into the target's static
 * function and writes its static global. Behaviour is read from the target's own output and from
 * /proc/PID/maps, never from our bookkeeping alone.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import {
  activatePatch,
  applyPatch,
  deactivatePatch,
  EngineError,
  listPatches,
  revertPatch,
} from "../../native/index.js";
import { compileFixture, patchMemfdPath, type RunningFixture, startFixture } from "../helpers/fixtures.js";

interface Tally {
  old: number;
  new: number;
  wrong: number;
  seen: number;
  loop: number;
}

function parseTally(line: string): Tally {
  const m = /old=(\d+) new=(\d+) wrong=(\d+) seen=(\d+) loop=v(\d+)/.exec(line);
  assert.ok(m, `not a tally line: ${line}`);
  const [, o, n, w, s, l] = m.map(Number) as [number, number, number, number, number, number];
  return { old: o, new: n, wrong: w, seen: s, loop: l };
}

async function tally(target: RunningFixture): Promise<Tally> {
  return parseTally(await target.nextLine(/^tally /));
}

/**
 * What the target computed between two consecutive tallies, once the last operation has settled. A
 * tally counts exactly the calls started before the fixture began it, however long a thread was
 * preempted between computing an answer and counting it (see patch_target.c). The first line read
 * may have been printed before the operation (it can sit in the pipe), and the second may have been
 * begun before it (the engine can stop the main thread between beginning a tally and printing it),
 * so both are skipped, and so is a window with no answers.
 */
async function delta(target: RunningFixture): Promise<Tally> {
  await tally(target);
  await tally(target);
  let a = await tally(target);
  // A window in which the hammering threads got no CPU at all (a busy machine) says nothing: skip it.
  for (let i = 0; i < 50; i++) {
    const b = await tally(target);
    const d = { old: b.old - a.old, new: b.new - a.new, wrong: b.wrong - a.wrong, seen: b.seen - a.seen, loop: b.loop };
    if (d.old + d.new + d.wrong > 0) return d;
    a = b;
  }
  throw new Error(`process ${target.pid} computed nothing in 50 tallies`);
}

async function maps(pid: number): Promise<string> {
  return readFile(`/proc/${pid}/maps`, "utf8");
}

const isCode = (code: string) => (err: unknown) => err instanceof EngineError && err.code === code;

const variants = [
  { name: "PIE", flags: ["-O2", "-g", "-fPIE", "-pie", "-pthread"] },
  { name: "non-PIE", flags: ["-O2", "-g", "-fno-pie", "-no-pie", "-pthread"] },
  {
    name: "PIE with endbr64 entries (-fcf-protection)",
    flags: ["-O2", "-g", "-fPIE", "-pie", "-pthread", "-fcf-protection=full"],
  },
];

for (const variant of variants) {
  describe(`patching a running ${variant.name} target`, () => {
    let target: RunningFixture;
    let patchSo: string;

    before(async () => {
      const binary = await compileFixture("c/patch_target.c", variant.flags);
      patchSo = await compileFixture("c/patch_compute.c", ["-O2", "-shared", "-fPIC", "-fcf-protection=full"]);
      target = await startFixture(binary, ["8"]);
    });
    after(async () => {
      await target.kill();
    });

    const spec = () => ({
      id: "fix-compute",
      soPath: patchSo,
      functions: [{ symbol: "compute", replacement: "compute_v2" }],
    });

    it("new calls, direct and through a function pointer, reach the replacement", async () => {
      const before = await delta(target);
      assert.ok(before.old > 0 && before.new === 0);
      const r = await applyPatch(target.pid, spec());
      assert.equal(r.patch.state, "active");
      assert.equal(r.patch.functions[0]?.jump, "rel32");
      assert.ok(r.pauseUs > 0);
      const after = await delta(target);
      assert.equal(after.old, 0, "no call reaches the old code once the next tally starts");
      assert.ok(after.new > 0);
      assert.ok(after.seen > 0, "the patch wrote the target's static global");
      assert.equal(after.wrong, 0);
    });

    it("the process shows the patch mapping and the state descriptor in /proc/PID/maps", async () => {
      const text = await maps(target.pid);
      // Handed over as a sealed memfd, never opened by path inside the target's root.
      assert.ok(text.includes(patchMemfdPath("fix-compute")));
      assert.ok(!text.includes(patchSo), "the target never opened patch.so by its path");
      assert.match(text, /\/memfd:hotpatch-state/);
      const [rec] = await listPatches(target.pid);
      assert.equal(rec?.id, "fix-compute");
      assert.equal(rec?.state, "active");
    });

    it("applying the active patch again changes nothing", async () => {
      const r = await applyPatch(target.pid, spec());
      assert.equal(r.changed, false);
      assert.equal(r.pauseUs, 0);
    });

    it("deactivation brings the old answers back, activation the new ones", async () => {
      await deactivatePatch(target.pid, "fix-compute");
      const off = await delta(target);
      assert.equal(off.new, 0);
      assert.ok(off.old > 0);
      assert.equal((await listPatches(target.pid))[0]?.state, "inactive");
      await activatePatch(target.pid, "fix-compute");
      const on = await delta(target);
      assert.equal(on.old, 0);
      assert.ok(on.new > 0);
    });

    it("revert with unload removes the mapping and leaves the original code", async () => {
      await revertPatch(target.pid, "fix-compute", { unload: true });
      const after = await maps(target.pid);
      assert.ok(!after.includes(patchMemfdPath("fix-compute")));
      assert.ok(!after.includes("hotpatch-state"), "a process without patches keeps no descriptor");
      assert.deepEqual(await listPatches(target.pid), []);
      const d = await delta(target);
      assert.equal(d.new, 0);
      assert.ok(d.old > 0);
      assert.equal(d.wrong, 0);
    });

    it("strict consistency times out cleanly on a function a thread never leaves", async () => {
      const before = await maps(target.pid);
      await assert.rejects(
        applyPatch(
          target.pid,
          { id: "loop-strict", soPath: patchSo, functions: [{ symbol: "event_loop", replacement: "event_loop_v2" }] },
          { safetyTimeoutMs: 300 },
        ),
        (err: unknown) => isCode("EUNSAFE_TIMEOUT")(err) && /event_loop/.test((err as Error).message),
      );
      assert.equal(await maps(target.pid), before, "no mapping is left behind");
      assert.deepEqual(await listPatches(target.pid), []);
      assert.equal((await tally(target)).loop, 1);
      assert.ok(target.alive());
    });

    it("a patch placed far away is reached through a near trampoline", async () => {
      const r = await applyPatch(target.pid, { ...spec(), id: "far" }, { placement: "far" });
      const f = r.patch.functions[0];
      assert.equal(f?.jump, "trampoline");
      assert.ok(
        f && (f.replacement - f.site > 0x7fffffffn || f.site - f.replacement > 0x7fffffffn),
        "beyond rel32 reach",
      );
      const on = await delta(target);
      assert.equal(on.old, 0);
      assert.ok(on.new > 0);
      assert.equal(on.wrong, 0);
      await revertPatch(target.pid, "far", { unload: true });
      assert.equal((await delta(target)).new, 0);
    });

    it("entry consistency patches it: the old activation runs on, the next call takes the new code", async () => {
      const r = await applyPatch(target.pid, {
        id: "loop-entry",
        soPath: patchSo,
        functions: [{ symbol: "event_loop", replacement: "event_loop_v2", consistency: "entry" }],
      });
      assert.equal(r.patch.functions[0]?.consistency, "entry");
      assert.equal((await delta(target)).loop, 2);
      await revertPatch(target.pid, "loop-entry", { unload: true, consistency: "entry" });
      assert.equal((await delta(target)).loop, 1);
    });
  });
}
