/**
 * What a maintenance engineer does, end to end through the CLI: build a bundle from C source
 * against the running program's binary, apply it to one process, to every process of the
 * executable, to every process of a library; see the answers change; revert. Bad bundles touch
 * nothing.
 */
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { hotpatch, jsonLines } from "../helpers/cli.js";
import { compileFixture, fixtureSource, type RunningFixture, startFixture } from "../helpers/fixtures.js";

/**
 * The target's answer after the last operation. Lines it printed (every 20 ms) before the operation
 * that this process, held up on a busy machine, has not read yet are read first; then the next line
 * may still have been computed before the operation, and the one after it is the answer.
 */
async function answer(t: RunningFixture, re: RegExp): Promise<string> {
  await new Promise((r) => setImmediate(r));
  await t.nextLine(re);
  return t.nextLine(re);
}

describe("build → apply → revert through the CLI", () => {
  let tmp: string;
  let binary: string;
  let bundle: string;
  let one: RunningFixture;
  let two: RunningFixture;
  let otherBuild: RunningFixture;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-cli-"));
    binary = await compileFixture(["c/stacked_statics_b.c", "c/stacked_statics_a.c"], ["-O2", "-g", "-fPIE", "-pie"]);
    const other = await compileFixture(
      ["c/stacked_statics_b.c", "c/stacked_statics_a.c"],
      ["-O1", "-g", "-fPIE", "-pie"],
    );
    bundle = path.join(tmp, "fix-b");
    const built = await hotpatch([
      "build",
      "--target",
      binary,
      "--source",
      fixtureSource("c/helper_patch.c"),
      "--function",
      "stacked_statics_b.c:helper=helper_v2",
      "--id",
      "fix-b",
      "--out",
      bundle,
    ]);
    assert.equal(built.code, 0, built.stderr);
    one = await startFixture(binary);
    two = await startFixture(binary);
    otherBuild = await startFixture(other);
  });
  after(async () => {
    await Promise.all([one.kill(), two.kill(), otherBuild.kill()]);
    await rm(tmp, { recursive: true, force: true });
  });

  it("apply --pid patches that process only and reports the function and pause", async () => {
    const r = await hotpatch(["apply", "--pid", String(one.pid), bundle, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const [proc, summary] = jsonLines(r.stdout);
    assert.equal(proc?.outcome, "done");
    assert.match(String(proc?.detail), /stacked_statics_b\.c:helper@0x[0-9a-f]+→0x[0-9a-f]+ \(pause \d+ µs\)/);
    assert.equal(summary?.done, 1);
    const [fn] = (proc?.functions ?? []) as { symbol: string; address: string; replacement: string; jump: string }[];
    assert.equal(fn?.symbol, "stacked_statics_b.c:helper");
    assert.match(fn?.address ?? "", /^0x[0-9a-f]+$/);
    assert.equal(fn?.jump, "rel32");
    assert.ok(Number(proc?.pauseUs) > 0);
    assert.equal(await answer(one, /^answers /), "answers a=101 b=901");
    assert.equal(await answer(two, /^answers /), "answers a=101 b=201");
  });

  it("apply --exe patches every process of that executable, says which were already patched, skips another build", async () => {
    const r = await hotpatch(["apply", "--exe", binary, bundle, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    const byPid = new Map(lines.filter((l) => l.type === "process").map((l) => [l.pid, l.outcome]));
    assert.equal(byPid.get(one.pid), "already");
    assert.equal(byPid.get(two.pid), "done");
    assert.equal(byPid.has(otherBuild.pid), false, "another executable file is not even considered");
    assert.equal(await answer(two, /^answers /), "answers a=101 b=901");

    // Same path, other build: the build-id decides, never the name.
    const copy = path.join(tmp, "service");
    await copyFile(binary, copy);
    const r2 = await hotpatch(["apply", "--pid", String(otherBuild.pid), bundle]);
    assert.equal(r2.code, 1);
    assert.match(r2.stdout, /skipped \[EBUILDID\]/);
    assert.equal(await answer(otherBuild, /^answers /), "answers a=101 b=201");
  });

  it("revert --exe --unload takes it back everywhere", async () => {
    const r = await hotpatch(["revert", "--exe", binary, "fix-b", "--unload", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(jsonLines(r.stdout).find((l) => l.type === "summary")?.done, 2);
    assert.equal(await answer(one, /^answers /), "answers a=101 b=201");
    assert.equal(await answer(two, /^answers /), "answers a=101 b=201");
  });

  it("a tampered bundle is refused before any process is touched", async () => {
    const bad = path.join(tmp, "tampered");
    await hotpatch([
      "build",
      "--target",
      binary,
      "--source",
      fixtureSource("c/helper_patch.c"),
      "--function",
      "stacked_statics_b.c:helper=helper_v2",
      "--id",
      "tampered",
      "--out",
      bad,
    ]);
    const so = path.join(bad, "patch.so");
    const bytes = await readFile(so);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
    await writeFile(so, bytes);
    const mapsBefore = await readFile(`/proc/${one.pid}/maps`, "utf8");
    const r = await hotpatch(["apply", "--pid", String(one.pid), bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[EBUNDLE_HASH\]/);
    assert.equal(await readFile(`/proc/${one.pid}/maps`, "utf8"), mapsBefore);
  });
});

describe("apply --lib", () => {
  let tmp: string;
  let lib: string;
  let user: RunningFixture;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-lib-"));
    lib = await compileFixture("c/libgreet.c", ["-O2", "-shared", "-fPIC"]);
    user = await startFixture(
      await compileFixture("c/uses_lib.c", ["-O2", "-g", "-fPIE", "-pie", "-Wl,--no-as-needed", lib]),
    );
  });
  after(async () => {
    await user.kill();
    await rm(tmp, { recursive: true, force: true });
  });

  it("patches every process that maps the library, by the library's build-id", async () => {
    const bundle = path.join(tmp, "greet");
    const built = await hotpatch([
      "build",
      "--target",
      lib,
      "--source",
      fixtureSource("c/lib_patch.c"),
      "--function",
      "greet_value=greet_value_v2",
      "--id",
      "greet",
      "--out",
      bundle,
    ]);
    assert.equal(built.code, 0, built.stderr);
    const r = await hotpatch(["apply", "--lib", lib, bundle, "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.ok(jsonLines(r.stdout).some((l) => l.pid === user.pid && l.outcome === "done"));
    assert.match(await answer(user, /^lib=/), /^lib=21 /);
  });
});
