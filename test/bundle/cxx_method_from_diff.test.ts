/**
 * A C++ method patched from a diff (a Makefile that compiles with $(CXX)): the object's state, a
 * member of a global object, goes on from its running value.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, it } from "node:test";
import { promisify } from "node:util";
import { buildBundleFromDiff } from "../../bundle/index.js";
import { hotpatch } from "../helpers/cli.js";
import { fixtureSource, startFixture } from "../helpers/fixtures.js";

const run = promisify(execFile);
let tmp: string;
let tree: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-cxxdiff-test-"));
  tree = path.join(tmp, "cxxshop");
  await cp(fixtureSource("build/cxxshop"), tree, { recursive: true });
  await run("make", ["-s"], { cwd: tree });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

it("patches a C++ method and keeps the object's member", async () => {
  const r = await buildBundleFromDiff({
    target: path.join(tree, "cart"),
    sourceDir: tree,
    diff: path.join(tree, "add_twice.diff"),
    id: "cart-fix",
    out: path.join(tmp, "bundle"),
  });
  assert.deepEqual(
    r.functions.map((f) => [f.function, f.reason, f.replaces]),
    [["_ZN4Cart3addEi", "edited", "_ZN4Cart3addEi"]],
  );
  const app = await startFixture(path.join(tree, "cart"));
  try {
    await app.nextLine(/^items 5$/);
    const applied = await hotpatch(["apply", "--pid", String(app.pid), path.join(tmp, "bundle")]);
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    const deadline = Date.now() + 30_000;
    let jump = -1;
    let seen: number[] = [];
    while (jump < 0 && Date.now() < deadline) {
      await app.nextLine(/^items /);
      seen = [...app.output().matchAll(/^items (\d+)$/gm)].map((m) => Number(m[1]));
      jump = seen.findIndex((v, i) => i > 0 && v - (seen[i - 1] as number) === 10);
    }
    assert.ok(jump > 0, `no step of 10 in ${seen.slice(-5).join(" ")}`);
    assert.ok((seen[jump - 1] as number) >= 5, "the count was the running object's");
    const reverted = await hotpatch(["revert", "--pid", String(app.pid), "cart-fix"]);
    assert.equal(reverted.code, 0, reverted.stdout + reverted.stderr);
  } finally {
    await app.kill();
  }
});
