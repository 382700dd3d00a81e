/**
 * The issue's `counter` example, both ways: a fix file that defines its own copy of the target's
 * static is refused (it would restart the count at 0), and the same fix as a diff, built with a
 * single compiler command line as the build command, goes on counting from the running value.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { BundleError, buildBundle } from "../../bundle/index.js";
import { hotpatch } from "../helpers/cli.js";
import { fixtureSource, startFixture } from "../helpers/fixtures.js";

const run = promisify(execFile);
const BUILD = "cc -O2 -o app app.c";

function counts(output: string): number[] {
  return [...output.matchAll(/^count (\d+)$/gm)].map((m) => Number(m[1]));
}

describe("a patch keeps the running program's state", () => {
  let tmp: string;
  let tree: string;
  let target: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-state-test-"));
    tree = path.join(tmp, "counter");
    await cp(fixtureSource("build/counter"), tree, { recursive: true });
    await run("sh", ["-c", BUILD], { cwd: tree });
    target = path.join(tree, "app");
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("refuses a --source fix file that defines its own copy of the target's static (EDATA_DUPLICATE)", async () => {
    await assert.rejects(
      buildBundle({
        target,
        source: path.join(tree, "app_patched.c"),
        functions: ["bump"],
        out: path.join(tmp, "refused"),
      }),
      (err: unknown) => {
        assert.ok(err instanceof BundleError);
        assert.equal(err.code, "EDATA_DUPLICATE", err.message);
        assert.match(err.message, /defines counter, and .* has the static app\.c:counter/);
        return true;
      },
    );
  });

  it("builds the same fix from a diff with a one-line build command, and the count goes on from its running value", async () => {
    const bundle = path.join(tmp, "from-diff");
    const built = await hotpatch([
      "build",
      "--target",
      target,
      "--source-dir",
      tree,
      "--diff",
      path.join(tree, "counter.diff"),
      "--build-command",
      BUILD,
      "--id",
      "counter-fix",
      "--out",
      bundle,
    ]);
    assert.equal(built.code, 0, built.stdout + built.stderr);
    assert.match(built.stdout, /replaces {2}bump -> patch: its code changed: the diff edits it/);
    const app = await startFixture(target);
    try {
      await app.nextLine(/^count 5$/);
      const applied = await hotpatch(["apply", "--pid", String(app.pid), bundle]);
      assert.equal(applied.code, 0, applied.stdout + applied.stderr);
      await app.nextLine(/^count \d{4,}$/);
      const seen = counts(app.output());
      const jump = seen.findIndex((c, i) => i > 0 && c - (seen[i - 1] as number) === 1000);
      assert.ok(jump > 0, `no step of 1000 in ${seen.join(" ")}`);
      // The patched code adds 1000 to the count the process had, not to a fresh 0.
      assert.ok((seen[jump - 1] as number) >= 5);
      assert.equal(seen[jump], (seen[jump - 1] as number) + 1000);
      const reverted = await hotpatch(["revert", "--pid", String(app.pid), "counter-fix"]);
      assert.equal(reverted.code, 0, reverted.stdout + reverted.stderr);
      const at = app.output().length;
      await app.nextLine(/^count /);
      await app.nextLine(/^count /);
      const later = counts(app.output().slice(at));
      assert.equal((later[1] as number) - (later[0] as number), 1);
    } finally {
      await app.kill();
    }
  });
});
