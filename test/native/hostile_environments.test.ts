/**
 * Hostile environments give a clear error naming the cause and the fix, never a hang or a dead
 * target: a seccomp filter that forbids loading code (even one that would kill the process for
 * trying), and a target in another mount namespace that cannot see our files.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { applyPatch, EngineError, listPatches, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, runTool, startFixture } from "../helpers/fixtures.js";

async function b(t: RunningFixture): Promise<number> {
  await t.nextLine(/^answers /);
  return Number(/b=(\d+)/.exec(await t.nextLine(/^answers /))?.[1]);
}

describe("seccomp", () => {
  let patch: string;
  let binary: string;
  before(async () => {
    patch = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    binary = await compileFixture("c/seccomp_target.c", ["-O2", "-g", "-fPIE", "-pie"]);
  });

  for (const mode of ["errno", "kill"]) {
    it(`a filter that would ${mode === "kill" ? "kill the process for" : "refuse"} mapping code → ESECCOMP, and the target lives on untouched`, async () => {
      const target = await startFixture(binary, [mode]);
      try {
        const before = await readFile(`/proc/${target.pid}/maps`, "utf8");
        await assert.rejects(
          applyPatch(target.pid, {
            id: "s",
            soPath: patch,
            functions: [{ symbol: "helper", replacement: "helper_v2" }],
          }),
          (err: unknown) =>
            err instanceof EngineError && err.code === "ESECCOMP" && /SystemCallFilter|filter/.test(err.message),
        );
        assert.equal(await readFile(`/proc/${target.pid}/maps`, "utf8"), before);
        assert.equal(await b(target), 201);
        assert.ok(target.alive());
      } finally {
        await target.kill();
      }
    });
  }
});

describe("a target in another mount namespace", () => {
  let hidden: string;
  let target: RunningFixture;
  let patch: string;
  before(async () => {
    // The patch lives in a folder the target cannot see: inside its namespace a tmpfs covers it.
    hidden = await mkdtemp(path.join(os.tmpdir(), "hotpatch-hidden-"));
    const built = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    patch = path.join(hidden, "patch.so");
    await runTool("cp", [built, patch]);
    const binary = await compileFixture(
      ["c/stacked_statics_b.c", "c/stacked_statics_a.c"],
      ["-O2", "-g", "-fPIE", "-pie"],
    );
    target = await startFixture("unshare", [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount -t tmpfs none ${hidden} && exec ${binary}`,
    ]);
  });
  after(async () => {
    await target.kill();
    await rm(hidden, { recursive: true, force: true });
  });

  it("gets a copy of the patch inside its own root, and the patch works", async () => {
    const theirs = await runTool("sh", ["-c", `ls /proc/${target.pid}/root${hidden} | wc -l`]);
    assert.equal(theirs.trim(), "0", "the target really cannot see the patch file");
    const r = await applyPatch(target.pid, {
      id: "ns",
      soPath: patch,
      functions: [{ symbol: "stacked_statics_b.c:helper", replacement: "helper_v2" }],
    });
    assert.equal(r.patch.soPath, "/tmp/hotpatch-ns.so");
    assert.equal(await b(target), 901);
    assert.match(await readFile(`/proc/${target.pid}/maps`, "utf8"), /\/tmp\/hotpatch-ns\.so/);
    await revertPatch(target.pid, "ns", { unload: true });
    assert.deepEqual(await listPatches(target.pid), []);
    assert.equal(await b(target), 201);
  });
});
