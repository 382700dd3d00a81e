/**
 * C++: an exception thrown inside the replacement unwinds through patch code into the target's
 * catch, with either loader. The mmap loader registers the patch's .eh_frame with the target's
 * unwinder (and takes it back before unloading); with dlopen the target's ld.so knows the patch.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { applyPatch, listPatches, revertPatch } from "../../native/index.js";
import { compileFixture, patchMemfdPath, type RunningFixture, startFixture } from "../helpers/fixtures.js";

for (const loader of ["mmap", "dlopen"] as const) {
  describe(`C++ exceptions through a patch loaded with ${loader}`, () => {
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

    const spec = () => ({
      id: "cxx",
      soPath: patch,
      loader,
      functions: [{ symbol: "parse", replacement: "parse_v2" }],
    });

    it("an exception thrown through the replacement is still caught by the target's caller", async () => {
      assert.equal(await reading(), "parsed value=10 caught=negative v1");
      const r = await applyPatch(target.pid, spec());
      assert.equal(r.patch.loader, loader);
      assert.equal(await reading(), "parsed value=15 caught=negative v2");
      assert.ok(target.alive());
    });

    it("revert with unload takes the patch out; applying again works as the first time", async () => {
      await revertPatch(target.pid, "cxx", { unload: true });
      assert.deepEqual(await listPatches(target.pid), []);
      assert.ok(
        !(await readFile(`/proc/${target.pid}/maps`, "utf8")).includes(patchMemfdPath("cxx")),
        "the patch is unmapped",
      );
      assert.equal(await reading(), "parsed value=10 caught=negative v1");
      // A stale registration (or a stale ld.so entry) would make this throw crash.
      await applyPatch(target.pid, spec());
      assert.equal(await reading(), "parsed value=15 caught=negative v2");
      assert.ok(target.alive());
    });
  });
}
