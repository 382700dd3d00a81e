/**
 * The dlopen loader makes the target run its own dynamic loader, which takes malloc's and the
 * loader's locks. With 8 threads hammering malloc/free, 200 apply/unload cycles must never hang:
 * the call runs on a thread that holds neither lock while the others run on.
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { applyPatch, listPatches, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

let target: RunningFixture;
let patch: string;

before(async () => {
  target = await startFixture(await compileFixture("c/malloc_hammer.c", ["-O2", "-g", "-fPIE", "-pie", "-pthread"]), [
    "8",
  ]);
  patch = await compileFixture("c/answer_patch.c", ["-O2", "-shared", "-fPIC"]);
});
after(async () => target.kill());

async function answer(): Promise<string> {
  await target.nextLine(/^answer=/);
  await target.nextLine(/^answer=/);
  return target.nextLine(/^answer=/);
}

it("200 dlopen apply/unload cycles under malloc load never hang and always work", { timeout: 300_000 }, async () => {
  const spec = {
    id: "dl",
    soPath: patch,
    loader: "dlopen" as const,
    functions: [{ symbol: "answer", replacement: "answer_v2" }],
  };
  for (let i = 0; i < 200; i++) {
    const r = await applyPatch(target.pid, spec, { safetyTimeoutMs: 10_000 });
    assert.equal(r.patch.loader, "dlopen");
    if (i % 50 === 0) assert.equal(await answer(), "answer=2");
    await revertPatch(target.pid, "dl", { unload: true, safetyTimeoutMs: 10_000 });
    if (i % 50 === 0) assert.equal(await answer(), "answer=1");
  }
  assert.deepEqual(await listPatches(target.pid), []);
  assert.ok(target.alive());
  assert.equal(await answer(), "answer=1");
});
