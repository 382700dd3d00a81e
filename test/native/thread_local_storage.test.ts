/**
 * A patch loaded by the mmap loader uses the target's own thread-local variables: the executable's
 * (initial-exec, R_X86_64_TPOFF64) and a shared library's (general dynamic, DTPMOD64/DTPOFF64
 * through the target's __tls_get_addr). Each of three threads prints what it reads from its own
 * TLS, so the answers show that the patch read each thread's value and wrote into each thread's
 * own variable (its count grows by exactly one per call of that thread).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { applyPatch, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

const THREADS = [1, 2, 3];

interface Line {
  r: number;
  exe: number;
  lib: number;
}

async function lineOf(target: RunningFixture, thread: number): Promise<Line> {
  const line = await target.nextLine(new RegExp(`^thread ${thread} `));
  const m = /r=(\d+) exe_writes=(\d+) lib_writes=(\d+)$/.exec(line);
  assert.ok(m, `not a thread line: ${line}`);
  return { r: Number(m[1]), exe: Number(m[2]), lib: Number(m[3]) };
}

/** Two consecutive lines of `thread` once it answers `r` (lines printed before a change may sit in the pipe). */
async function settledAt(target: RunningFixture, thread: number, r: number): Promise<[Line, Line]> {
  for (let i = 0; i < 50; i++) {
    const first = await lineOf(target, thread);
    if (first.r === r) return [first, await lineOf(target, thread)];
  }
  throw new Error(`thread ${thread} of ${target.pid} never answered r=${r}`);
}

describe("patches that use the target's thread-local storage", () => {
  let target: RunningFixture;
  let exePatch: string;
  let libPatch: string;

  before(async () => {
    const lib = await compileFixture("c/libtls_counter.c", ["-O2", "-shared", "-fPIC"]);
    const binary = await compileFixture("c/tls_target.c", [
      "-O2",
      "-g",
      "-fPIE",
      "-pie",
      "-pthread",
      "-Wl,--no-as-needed",
      lib,
    ]);
    exePatch = await compileFixture("c/tls_exe_patch.c", ["-O2", "-shared", "-fPIC"]);
    libPatch = await compileFixture("c/tls_lib_patch.c", ["-O2", "-shared", "-fPIC"]);
    target = await startFixture(binary);
  });
  after(async () => target.kill());

  it("the executable's __thread variables, initial-exec: each thread's own value read and written", async () => {
    for (const t of THREADS) assert.deepEqual((await settledAt(target, t, 1))[1], { r: 1, exe: 0, lib: 0 });
    await applyPatch(target.pid, {
      id: "tls-exe",
      soPath: exePatch,
      functions: [{ symbol: "measure", replacement: "measure_v2" }],
    });
    for (const t of THREADS) {
      const [a, b] = await settledAt(target, t, 1 + 1000 * t);
      assert.equal(b.r, 1 + 1000 * t, `thread ${t} reads its own thread_no`);
      assert.equal(b.exe, a.exe + 1, `thread ${t}'s own exe_writes counts its own calls`);
      assert.equal(b.lib, 0);
    }
    await revertPatch(target.pid, "tls-exe", { unload: true });
    for (const t of THREADS) {
      const [a, b] = await settledAt(target, t, 1);
      assert.equal(b.exe, a.exe, "nothing writes it once the patch is gone");
    }
    assert.ok(target.alive());
  });

  it("a shared library's __thread variables, general dynamic through the target's __tls_get_addr", async () => {
    await applyPatch(target.pid, {
      id: "tls-lib",
      soPath: libPatch,
      functions: [{ symbol: "measure", replacement: "measure_v3" }],
    });
    for (const t of THREADS) {
      // lib_scale is 10 * t in thread t's block of the library; thread_no (t) is the executable's.
      const [a, b] = await settledAt(target, t, 1 + 1000 * t + t);
      assert.equal(b.lib, a.lib + 1, `thread ${t}'s own lib_writes counts its own calls`);
      assert.ok(b.lib > 0);
    }
    await revertPatch(target.pid, "tls-lib", { unload: true });
    for (const t of THREADS) await settledAt(target, t, 1);
    assert.ok(target.alive());
  });
});
