/**
 * Which function a patch replaces, by name: statics qualified by source file, and a stripped
 * target whose symbols come from separate debug info found by build-id.
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { applyPatch, EngineError, readElf, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, runTool, startFixture } from "../helpers/fixtures.js";

async function answers(target: RunningFixture): Promise<{ a: number; b: number }> {
  await target.nextLine(/^answers /); // may predate the last operation
  const m = /a=(\d+) b=(\d+)/.exec(await target.nextLine(/^answers /));
  assert.ok(m);
  return { a: Number(m[1]), b: Number(m[2]) };
}

function buildTwoFileTarget(): Promise<string> {
  return compileFixture(["c/stacked_statics_b.c", "c/stacked_statics_a.c"], ["-O2", "-g", "-fPIE", "-pie"]);
}

describe("static functions of the same name in two source files", () => {
  let target: RunningFixture;
  let patch: string;
  before(async () => {
    patch = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    target = await startFixture(await buildTwoFileTarget());
  });
  after(async () => target.kill());

  it("an unqualified name is refused as ambiguous, naming both qualified forms", async () => {
    await assert.rejects(
      applyPatch(target.pid, { id: "amb", soPath: patch, functions: [{ symbol: "helper", replacement: "helper_v2" }] }),
      (err: unknown) =>
        err instanceof EngineError &&
        err.code === "EAMBIGUOUS_SYMBOL" &&
        /stacked_statics_a\.c:helper/.test(err.message) &&
        /stacked_statics_b\.c:helper/.test(err.message),
    );
    assert.deepEqual(await answers(target), { a: 101, b: 201 });
  });

  it("a name qualified by source file replaces exactly that one", async () => {
    await applyPatch(target.pid, {
      id: "only-b",
      soPath: patch,
      functions: [{ symbol: "stacked_statics_b.c:helper", replacement: "helper_v2" }],
    });
    assert.deepEqual(await answers(target), { a: 101, b: 901 });
    await revertPatch(target.pid, "only-b", { unload: true });
    assert.deepEqual(await answers(target), { a: 101, b: 201 });
  });
});

describe("a stripped target with separate debug info", () => {
  let dir: string;
  let target: RunningFixture;
  let patch: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "hotpatch-debug-"));
    const full = await buildTwoFileTarget();
    const stripped = path.join(dir, "service");
    await copyFile(full, stripped);
    const info = await readElf(full);
    assert.ok(info.buildId);
    const debugFile = path.join(dir, "debug/.build-id", info.buildId.slice(0, 2), `${info.buildId.slice(2)}.debug`);
    await mkdir(path.dirname(debugFile), { recursive: true });
    await runTool("objcopy", ["--only-keep-debug", full, debugFile]);
    await runTool("strip", ["--strip-all", stripped]);
    patch = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    target = await startFixture(stripped);
  });
  after(async () => {
    await target.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it("without the debug directory a static function is not found (ENOSYMBOL)", async () => {
    await assert.rejects(
      applyPatch(
        target.pid,
        { id: "s", soPath: patch, functions: [{ symbol: "stacked_statics_b.c:helper", replacement: "helper_v2" }] },
        { debugDirs: [path.join(dir, "nowhere")] },
      ),
      (err: unknown) => err instanceof EngineError && err.code === "ENOSYMBOL",
    );
  });

  it("with it, the static function is found by build-id and patched", async () => {
    await applyPatch(
      target.pid,
      { id: "s", soPath: patch, functions: [{ symbol: "stacked_statics_b.c:helper", replacement: "helper_v2" }] },
      { debugDirs: [path.join(dir, "debug")] },
    );
    assert.deepEqual(await answers(target), { a: 101, b: 901 });
  });
});

describe("a static function that shares its name with a library's export", () => {
  let dir: string;
  let patch: string;
  const targets: RunningFixture[] = [];

  async function probe(t: RunningFixture): Promise<string> {
    await t.nextLine(/^own=/); // may predate the last operation
    return t.nextLine(/^own=/);
  }

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "hotpatch-clash-"));
    const lib = await compileFixture("c/libgreet.c", ["-O2", "-shared", "-fPIC"]);
    const full = await compileFixture("c/static_clash.c", ["-O2", "-g", "-fPIE", "-pie", "-Wl,--no-as-needed", lib]);
    const info = await readElf(full);
    assert.ok(info.buildId);
    const debugFile = path.join(dir, "debug/.build-id", info.buildId.slice(0, 2), `${info.buildId.slice(2)}.debug`);
    await mkdir(path.dirname(debugFile), { recursive: true });
    await runTool("objcopy", ["--only-keep-debug", full, debugFile]);
    const stripped = path.join(dir, "service");
    await copyFile(full, stripped);
    await runTool("strip", ["--strip-all", stripped]);
    patch = await compileFixture("c/clash_patch.c", ["-O2", "-shared", "-fPIC"]);
    targets.push(await startFixture(full), await startFixture(stripped));
  });
  after(async () => {
    for (const t of targets) await t.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it("binds to the executable's own static, stripped (with debug info) or not, as the unstripped one does", async () => {
    for (const t of targets) {
      assert.equal(await probe(t), "own=501 probe=0");
      await applyPatch(
        t.pid,
        { id: "clash", soPath: patch, functions: [{ symbol: "probe", replacement: "probe_v2" }] },
        { debugDirs: [path.join(dir, "debug")] },
      );
      assert.equal(await probe(t), "own=501 probe=501");
    }
  });
});
