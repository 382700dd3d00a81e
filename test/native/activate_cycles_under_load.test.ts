/**
 * 1,000 activate/deactivate cycles while 8 threads hammer the patched function: the target never
 * crashes, and every answer it computes is the old or the new function's (it counts "wrong" ones).
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { activatePatch, deactivatePatch, loadPatch, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

let target: RunningFixture;
let patch: string;

before(async () => {
  const binary = await compileFixture("c/patch_target.c", [
    "-O2",
    "-g",
    "-fPIE",
    "-pie",
    "-pthread",
    "-fcf-protection=full",
  ]);
  patch = await compileFixture("c/patch_compute.c", ["-O2", "-shared", "-fPIC"]);
  target = await startFixture(binary, ["8"]);
});
after(async () => target.kill());

function parse(line: string) {
  const m = /old=(\d+) new=(\d+) wrong=(\d+)/.exec(line);
  assert.ok(m);
  return { old: Number(m[1]), new: Number(m[2]), wrong: Number(m[3]) };
}

it("survives 1,000 activate/deactivate cycles under 8-thread load with only old or new answers", async () => {
  const spec = { id: "cycle", soPath: patch, functions: [{ symbol: "compute", replacement: "compute_v2" }] };
  await loadPatch(target.pid, spec, { consistency: "entry" });
  const start = parse(await target.nextLine(/^tally /));
  let attempts = 0;
  for (let i = 0; i < 1000; i++) {
    attempts += (await activatePatch(target.pid, "cycle")).attempts;
    attempts += (await deactivatePatch(target.pid, "cycle")).attempts;
  }
  await revertPatch(target.pid, "cycle", { unload: true });
  await target.nextLine(/^tally /);
  const end = parse(await target.nextLine(/^tally /));
  assert.ok(target.alive(), "the target is still running");
  assert.equal(end.wrong, 0, "no answer was neither old nor new");
  assert.ok(end.new > start.new, "the new code ran during the cycles");
  assert.ok(end.old > start.old, "and the old code too");
  assert.ok(attempts >= 2000);
});
