/** Two patches stacked on one function: both apply, they come off in the right order only. */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { applyPatch, EngineError, listPatches, revertPatch, unloadPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

let target: RunningFixture;
let v2: string;
let v3: string;
const fn = "stacked_statics_b.c:helper";

async function b(): Promise<number> {
  await target.nextLine(/^answers /);
  return Number(/b=(\d+)/.exec(await target.nextLine(/^answers /))?.[1]);
}

before(async () => {
  target = await startFixture(
    await compileFixture(["c/stacked_statics_b.c", "c/stacked_statics_a.c"], ["-O2", "-g", "-fPIE", "-pie"]),
  );
  v2 = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
  v3 = await compileFixture("c/helper_patch_v3.c", ["-O2", "-shared", "-fPIC"]);
});
after(async () => target.kill());

it("a second patch on a patched function takes over, and reverting it brings back the first", async () => {
  await applyPatch(target.pid, { id: "p1", soPath: v2, functions: [{ symbol: fn, replacement: "helper_v2" }] });
  assert.equal(await b(), 901);
  await applyPatch(target.pid, { id: "p2", soPath: v3, functions: [{ symbol: fn, replacement: "helper_v3" }] });
  assert.equal(await b(), 3001);
  assert.deepEqual(
    (await listPatches(target.pid)).map((p) => [p.id, p.state, p.order]),
    [
      ["p1", "active", 1],
      ["p2", "active", 2],
    ],
  );

  await assert.rejects(
    revertPatch(target.pid, "p1"),
    (err: unknown) => err instanceof EngineError && err.code === "EREVERT_ORDER" && /'p2'/.test(err.message),
  );
  assert.equal(await b(), 3001, "the refused revert changed nothing");

  await revertPatch(target.pid, "p2");
  assert.equal(await b(), 901);
  await assert.rejects(
    unloadPatch(target.pid, "p1"),
    (err: unknown) => err instanceof EngineError && err.code === "EPATCH_ACTIVE",
  );
  await unloadPatch(target.pid, "p2");
  await revertPatch(target.pid, "p1", { unload: true });
  assert.equal(await b(), 201);
  assert.deepEqual(await listPatches(target.pid), []);
});

it("an inactive patch that another patch was stacked on cannot be unloaded from under it", async () => {
  await applyPatch(target.pid, { id: "q1", soPath: v2, functions: [{ symbol: fn, replacement: "helper_v2" }] });
  await applyPatch(target.pid, { id: "q2", soPath: v3, functions: [{ symbol: fn, replacement: "helper_v3" }] });
  await revertPatch(target.pid, "q2");
  await revertPatch(target.pid, "q1");
  // q2's saved "original" bytes are q1's jump: unmapping q1 first would leave q2 pointing nowhere.
  await assert.rejects(
    unloadPatch(target.pid, "q1"),
    (err: unknown) => err instanceof EngineError && err.code === "EPATCH_IN_USE",
  );
  await unloadPatch(target.pid, "q2");
  await unloadPatch(target.pid, "q1");
  assert.equal(await b(), 201);
});
