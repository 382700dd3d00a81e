/**
 * C++: an exception thrown inside the replacement unwinds through patch code into the target's
 * catch. The mmap loader registers the patch's .eh_frame with the target's unwinder (and takes it
 * back before unloading), so the process lives on.
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { applyPatch, listPatches, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

let target: RunningFixture;
let patch: string;

async function reading(): Promise<string> {
  await target.nextLine(/^parsed /);
  await target.nextLine(/^parsed /);
  return target.nextLine(/^parsed /);
}

before(async () => {
  const binary = await compileFixture("cxx/throwing_target.cc", ["-O2", "-g", "-fPIE", "-pie"], "g++");
  patch = await compileFixture("cxx/throwing_patch.cc", ["-O2", "-shared", "-fPIC"], "g++");
  target = await startFixture(binary);
});
after(async () => target.kill());

it("an exception thrown through the replacement is still caught by the target's caller", async () => {
  assert.equal(await reading(), "parsed value=10 caught=negative v1");
  await applyPatch(target.pid, { id: "cxx", soPath: patch, functions: [{ symbol: "parse", replacement: "parse_v2" }] });
  assert.equal(await reading(), "parsed value=15 caught=negative v2");
  assert.ok(target.alive());
});

it("revert and unload deregister the tables; the old code throws and is caught as before", async () => {
  await revertPatch(target.pid, "cxx", { unload: true });
  assert.deepEqual(await listPatches(target.pid), []);
  assert.equal(await reading(), "parsed value=10 caught=negative v1");
  // Applying again registers afresh: a stale registration would make this throw crash.
  await applyPatch(target.pid, { id: "cxx", soPath: patch, functions: [{ symbol: "parse", replacement: "parse_v2" }] });
  assert.equal(await reading(), "parsed value=15 caught=negative v2");
  assert.ok(target.alive());
});
