/**
 * After a package upgrade a running process still runs the build it started with while its path
 * names a new one. `hotpatch apply` compares a bundle's build-id with what each process has
 * mapped: the bundle built for the running build applies, the one built for the new file is
 * refused with EBUILDID naming both build-ids — for an executable renamed over or deleted, and for
 * a library renamed over.
 */
import assert from "node:assert/strict";
import { chmod, copyFile, mkdtemp, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readElf } from "../../native/index.js";
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

async function buildId(file: string): Promise<string> {
  const id = (await readElf(file)).buildId;
  assert.ok(id, `${file} has a build-id`);
  return id;
}

async function build(tmp: string, target: string, source: string, fn: string, id: string): Promise<string> {
  const out = path.join(tmp, id);
  const r = await hotpatch([
    "build",
    "--target",
    target,
    "--source",
    fixtureSource(source),
    "--function",
    fn,
    "--id",
    id,
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

/** Applies `bundle` to `pid` and returns that process's outcome line and the exit code. */
async function apply(
  bundle: string,
  target: string[],
  pid: number,
): Promise<{ code: number; line: Record<string, unknown> | undefined }> {
  const r = await hotpatch(["apply", ...target, bundle, "--json"]);
  return { code: r.code, line: jsonLines(r.stdout).find((l) => l.pid === pid) };
}

const upgrades: { name: string; upgrade: (file: string, next: string) => Promise<void> }[] = [
  {
    name: "renamed over by a new build",
    upgrade: async (file, next) => {
      await copyFile(next, `${file}.new`);
      await rename(`${file}.new`, file);
    },
  },
  { name: "deleted", upgrade: (file) => rm(file) },
];

describe("an executable upgraded on disk while it runs", () => {
  let tmp: string;
  let running: string;
  let next: string;
  let forRunning: string;
  let forNext: string;
  const sources = ["c/stacked_statics_b.c", "c/stacked_statics_a.c"];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-upgrade-"));
    running = await compileFixture(sources, ["-O2", "-g", "-fPIE", "-pie"]);
    next = await compileFixture(sources, ["-O1", "-g", "-fPIE", "-pie"]);
    forRunning = await build(tmp, running, "c/helper_patch.c", "stacked_statics_b.c:helper=helper_v2", "for-running");
    forNext = await build(tmp, next, "c/helper_patch.c", "stacked_statics_b.c:helper=helper_v2", "for-next");
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  for (const u of upgrades) {
    describe(u.name, () => {
      let target: RunningFixture;
      before(async () => {
        const dir = await mkdtemp(path.join(tmp, "service-"));
        const file = path.join(dir, "service");
        await copyFile(running, file);
        target = await startFixture(file);
        await u.upgrade(file, next);
      });
      after(async () => target?.kill());

      it("a bundle built for the new file is refused with EBUILDID naming both build-ids", async () => {
        const { code, line } = await apply(forNext, ["--pid", String(target.pid)], target.pid);
        assert.equal(code, 1);
        assert.equal(line?.outcome, "skipped");
        assert.equal(line?.code, "EBUILDID");
        assert.ok(String(line?.detail).includes(await buildId(running)), String(line?.detail));
        assert.ok(String(line?.detail).includes(await buildId(next)), String(line?.detail));
        assert.equal(await answer(target, /^answers /), "answers a=101 b=201");
      });

      it("the bundle built for the running build applies", async () => {
        const { code, line } = await apply(forRunning, ["--pid", String(target.pid)], target.pid);
        assert.equal(code, 0, JSON.stringify(line));
        assert.equal(line?.outcome, "done");
        assert.equal(await answer(target, /^answers /), "answers a=101 b=901");
      });
    });
  }
});

describe("a library renamed over by a new build while a process maps it", () => {
  const soname = "libgreet-swap.so";
  let tmp: string;
  let lib: string;
  let running: string;
  let next: string;
  let forRunning: string;
  let forNext: string;
  let target: RunningFixture;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-libupgrade-"));
    await chmod(tmp, 0o755);
    const flags = ["-O2", "-shared", "-fPIC", `-Wl,-soname,${soname}`];
    running = await compileFixture("c/libgreet.c", flags);
    next = await compileFixture("c/libgreet_next.c", flags);
    const binary = await compileFixture("c/uses_lib.c", ["-O2", "-fPIE", "-pie", "-Wl,--no-as-needed", running]);
    forRunning = await build(tmp, running, "c/lib_patch.c", "greet_value=greet_value_v2", "lib-for-running");
    forNext = await build(tmp, next, "c/lib_patch.c", "greet_value=greet_value_v2", "lib-for-next");
    const dir = await mkdtemp(path.join(tmp, "lib-"));
    lib = path.join(dir, soname);
    await copyFile(running, lib);
    target = await startFixture(binary, [], 10_000, { LD_LIBRARY_PATH: dir });
    await copyFile(next, `${lib}.new`);
    await rename(`${lib}.new`, lib);
  });
  after(async () => {
    await target?.kill();
    await rm(tmp, { recursive: true, force: true });
  });

  it("apply --lib refuses the bundle built for the new file with EBUILDID naming both build-ids", async () => {
    const { code, line } = await apply(forNext, ["--lib", lib], target.pid);
    assert.equal(code, 1);
    assert.equal(line?.outcome, "skipped");
    assert.equal(line?.code, "EBUILDID");
    assert.ok(String(line?.detail).includes(await buildId(running)), String(line?.detail));
    assert.ok(String(line?.detail).includes(await buildId(next)), String(line?.detail));
    assert.match(await answer(target, /^lib=/), /^lib=11 /);
  });

  it("apply --lib applies the bundle built for the build the process still maps", async () => {
    const { code, line } = await apply(forRunning, ["--lib", lib], target.pid);
    assert.equal(code, 0, JSON.stringify(line));
    assert.equal(line?.outcome, "done");
    assert.match(await answer(target, /^lib=/), /^lib=21 /);
  });
});
