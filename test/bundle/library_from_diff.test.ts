/**
 * A patch to a shared library built from a diff (`--target libprice.so`, the library found by the
 * program through RUNPATH $ORIGIN), applied with `--pid` alone: the process maps a library of the
 * bundle's build-id. The library's static and global counters go on from their running values.
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
  tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-libdiff-test-"));
  tree = path.join(tmp, "libshop");
  await cp(fixtureSource("build/libshop"), tree, { recursive: true });
  await run("make", ["-s"], { cwd: tree });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function sales(output: string): { sold: number; total: number }[] {
  return [...output.matchAll(/^price 110 sold (\d+) total (\d+)$/gm)].map((m) => ({
    sold: Number(m[1]),
    total: Number(m[2]),
  }));
}

it("patches a library function from a diff and keeps the library's static and global", async () => {
  const r = await buildBundleFromDiff({
    target: path.join(tree, "libprice.so"),
    sourceDir: tree,
    diff: path.join(tree, "markup.diff"),
    id: "lib-fix",
    out: path.join(tmp, "bundle"),
  });
  assert.equal(r.manifest.target.kind, "library");
  assert.deepEqual(r.manifest.functions, [{ symbol: "price", replacement: "hotpatch.price" }]);
  const app = await startFixture(path.join(tree, "app"));
  try {
    await app.nextLine(/ sold 5 /);
    const applied = await hotpatch(["apply", "--pid", String(app.pid), path.join(tmp, "bundle")]);
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    const deadline = Date.now() + 30_000;
    let seen = sales(app.output());
    let jump = -1;
    while (jump < 0 && Date.now() < deadline) {
      await app.nextLine(/^price /);
      seen = sales(app.output());
      jump = seen.findIndex((s, i) => i > 0 && s.sold - (seen[i - 1]?.sold as number) === 2);
    }
    assert.ok(jump > 0, "the patched library code ran");
    const before = seen[jump - 1] as { sold: number; total: number };
    assert.ok(before.sold >= 5);
    // The new code steps the library's own counters: +2 sales, +200 total, from where they were.
    assert.deepEqual(seen[jump], { sold: before.sold + 2, total: before.total + 200 });
    const reverted = await hotpatch(["revert", "--pid", String(app.pid), "lib-fix"]);
    assert.equal(reverted.code, 0, reverted.stdout + reverted.stderr);
  } finally {
    await app.kill();
  }
});
