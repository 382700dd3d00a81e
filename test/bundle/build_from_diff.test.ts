/**
 * `hotpatch build --source-dir --diff` against a real project (test/fixtures/build/shop, built with
 * its own Makefile and the real compiler): the changed functions are found, not named; the patch
 * uses the running process's own data; the answers of the patched process, read from its output,
 * change as the diff says, its counters go on from where they were, and revert brings back the
 * old answers. Refusals (data changes, another build, a diff that does not apply, no change) are
 * checked by their codes.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { BundleError, buildBundleFromDiff, type DiffBuildResult } from "../../bundle/index.js";
import { hotpatch, jsonLines } from "../helpers/cli.js";
import { fixtureSource, type RunningFixture, startFixture } from "../helpers/fixtures.js";

const run = promisify(execFile);
const project = fixtureSource("build/shop");
const diff = (name: string) => path.join(project, "diffs", name);

/** One output line of the shop, as numbers. */
interface Tick {
  tick: number;
  a: number;
  b: number;
  tax: number;
  scaled: number;
  visit: number;
  total: number;
}

function ticks(output: string): Tick[] {
  const out: Tick[] = [];
  for (const m of output.matchAll(
    /^tick (\d+) a=(-?\d+) b=(-?\d+) tax=(-?\d+) scaled=(-?\d+) visit=(\d+) total=(-?\d+)$/gm,
  )) {
    const [tick, a, b, tax, scaled, visit, total] = m.slice(1).map(Number) as number[];
    out.push({ tick, a, b, tax, scaled, visit, total } as Tick);
  }
  return out;
}

function rejectsWith(code: string, match?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof BundleError, `expected a BundleError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (match) assert.match(err.message, match);
    return true;
  };
}

describe("hotpatch build from a diff", () => {
  let tmp: string;
  let tree: string;
  let target: string;
  let n = 0;
  const out = () => path.join(tmp, `bundle-${++n}`);
  const build = (name: string, extra: Partial<Parameters<typeof buildBundleFromDiff>[0]> = {}) =>
    buildBundleFromDiff({ target, sourceDir: tree, diff: diff(name), out: out(), ...extra });

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-diff-test-"));
    tree = path.join(tmp, "shop");
    await cp(project, tree, { recursive: true });
    await run("make", ["-s"], { cwd: tree });
    target = path.join(tree, "shop");
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  /**
   * Starts the shop, lets it count, applies the bundle, waits for answers of the patched code,
   * reverts, and returns the lines before, right after and after the revert.
   */
  async function patchRunning(bundle: string, id: string, changed: (t: Tick, prev: Tick) => boolean) {
    let shop: RunningFixture | undefined;
    try {
      shop = await startFixture(target);
      await shop.nextLine(/^tick 5 /);
      const applied = await hotpatch(["apply", "--pid", String(shop.pid), bundle, "--json"]);
      assert.equal(applied.code, 0, applied.stdout + applied.stderr);
      const firstNew = await waitFor(shop, changed);
      const reverted = await hotpatch(["revert", "--pid", String(shop.pid), id, "--json"]);
      assert.equal(reverted.code, 0, reverted.stdout + reverted.stderr);
      const afterRevert = await waitFor(shop, (t, prev) => prev.tick > firstNew.tick && !changed(t, prev));
      assert.ok(shop.alive());
      const all = ticks(shop.output());
      const i = all.findIndex((t) => t.tick === firstNew.tick);
      return { before: all[i - 1] as Tick, first: firstNew, afterRevert, all };
    } finally {
      await shop?.kill();
    }
  }

  /** The first line (after the first) for which `ok(line, the line before)` holds, within 30 s. */
  async function waitFor(shop: RunningFixture, ok: (t: Tick, prev: Tick) => boolean): Promise<Tick> {
    const deadline = Date.now() + 30_000;
    let from = 1;
    while (Date.now() < deadline) {
      const all = ticks(shop.output());
      for (; from < all.length; from++) if (ok(all[from] as Tick, all[from - 1] as Tick)) return all[from] as Tick;
      await shop.nextLine(/^tick /, 20_000);
    }
    throw new Error("the shop never gave the awaited answer within 30 s");
  }

  it("patches both callers of a changed static function that is inlined into them (CLI, end to end)", async () => {
    const bundle = out();
    const built = await hotpatch([
      "build",
      "--target",
      target,
      "--source-dir",
      tree,
      "--diff",
      diff("inlined_discount.diff"),
      "--out",
      bundle,
      "--json",
    ]);
    assert.equal(built.code, 0, built.stdout + built.stderr);
    const result = jsonLines(built.stdout)[0] as unknown as DiffBuildResult;
    assert.deepEqual(
      result.functions.map((f) => [f.function, f.reason, f.replaces]),
      [
        ["price_a", "inlined", "price_a"],
        ["price_b", "inlined", "price_b"],
      ],
    );
    assert.deepEqual(result.units, ["calc.c"]);
    const seen = await patchRunning(bundle, result.manifest.id, (t) => t.a !== 90);
    assert.deepEqual([seen.before.a, seen.before.b], [90, 190]);
    assert.deepEqual([seen.first.a, seen.first.b], [80, 180]);
    assert.deepEqual([seen.afterRevert.a, seen.afterRevert.b], [90, 190]);
  });

  it("keeps the running values of a file static and a function-local static", async () => {
    const r = await build("keep_state.diff");
    assert.deepEqual(
      r.manifest.functions.map((f) => f.symbol),
      ["visit"],
    );
    assert.equal(r.functions[0]?.reason, "edited");
    const visits = (t: Tick) => Math.floor(t.visit / 1000);
    const calls = (t: Tick) => t.visit % 1000;
    const seen = await patchRunning(r.dir as string, r.manifest.id, (t, prev) => visits(t) - visits(prev) !== 1);
    assert.ok(visits(seen.before) >= 5, "the shop counted before the patch");
    // The new code steps the same counters on: +100 visits and +10 calls, from the running values.
    assert.equal(visits(seen.first), visits(seen.before) + 100);
    assert.equal(calls(seen.first), calls(seen.before) + 10);
    // Reverted, the old code counts on from the values the patch left: the counters were never copied.
    assert.ok(visits(seen.afterRevert) > visits(seen.first));
  });

  it("adds a new helper function and keeps a global's running value", async () => {
    const r = await build("new_helper.diff");
    assert.deepEqual(
      r.functions.map((f) => [f.function, f.reason, f.replaces]),
      [
        ["bonus", "new", null],
        ["add_total", "edited", "add_total"],
      ],
    );
    const seen = await patchRunning(r.dir as string, r.manifest.id, (t, prev) => t.total - prev.total !== 1);
    assert.equal(seen.first.total, seen.before.total + 7);
    assert.ok(seen.before.total >= 5);
  });

  it("patches the functions a header change reaches", async () => {
    const r = await build("header_tax.diff");
    assert.deepEqual(r.units.sort(), ["calc.c", "main.c", "stats.c"]);
    assert.deepEqual(
      r.manifest.functions.map((f) => f.symbol),
      ["with_tax"],
    );
    const seen = await patchRunning(r.dir as string, r.manifest.id, (t) => t.tax !== 110);
    assert.equal(seen.first.tax, 120);
  });

  it("patches a compiler clone (-O2 .constprop) through its own symbol", async () => {
    const r = await build("clone_scale.diff");
    assert.deepEqual(
      r.functions.map((f) => [f.function, f.reason, f.replaces]),
      [["scale.constprop.0", "clone", "calc.c:scale.constprop.0"]],
    );
    const seen = await patchRunning(r.dir as string, r.manifest.id, (t) => t.scaled !== 69);
    assert.equal(seen.first.scaled, 63);
  });

  it("lists functions changed only through __LINE__ apart and does not patch them", async () => {
    await assert.rejects(build("line_shift_only.diff"), rejectsWith("ENOCHANGE", /__LINE__.*stats\.c:where/));
    const r = await build("line_shift_and_fix.diff");
    assert.deepEqual(r.lineOnly, ["stats.c:where"]);
    assert.deepEqual(
      r.manifest.functions.map((f) => f.symbol),
      ["add_total"],
    );
  });

  it("refuses a diff that changes data (EDATA_CHANGED), naming the object", async () => {
    await assert.rejects(
      build("data_initialiser.diff"),
      rejectsWith("EDATA_CHANGED", /static visits has a new initial value/),
    );
  });

  it("refuses a diff that changes no compiled code (ENOCHANGE)", async () => {
    await assert.rejects(build("comment_only.diff"), rejectsWith("ENOCHANGE"));
  });

  it("refuses a diff that does not apply (EDIFF), naming the hunk", async () => {
    await assert.rejects(
      build("does_not_apply.diff"),
      rejectsWith("EDIFF", /hunk #1 of calc\.c at diff line 3.*line 6/),
    );
  });

  it("refuses a binary built with other flags than the tree's build (EBUILD_MISMATCH), naming the function and instruction", async () => {
    const other = path.join(tmp, "shop-O1");
    await cp(project, other, { recursive: true });
    await run("make", ["-s", "CFLAGS=-O1 -fPIE"], { cwd: other });
    await assert.rejects(
      buildBundleFromDiff({
        target: path.join(other, "shop"),
        sourceDir: other,
        diff: diff("inlined_discount.diff"),
        out: out(),
      }),
      rejectsWith(
        "EBUILD_MISMATCH",
        /is not the running binary: \S+ (is \d+ bytes in the target|differs at \+0x[0-9a-f]+ \(target instruction `[^`]+`)/,
      ),
    );
  });

  it("leaves nothing at --out when it refuses", async () => {
    const dest = out();
    await assert.rejects(
      buildBundleFromDiff({ target, sourceDir: tree, diff: diff("data_initialiser.diff"), out: dest }),
    );
    await assert.rejects(run("ls", [dest]));
  });
});
