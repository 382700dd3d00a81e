/**
 * Targets that are children of the process running the engine (an embedding supervisor, or a test
 * that spawns its target directly): their ptrace stops are reported to every thread of this process,
 * and Node's child watcher (libuv's SIGCHLD handler on the main thread) may take a report before the
 * engine does. The engine must notice the stop from the thread itself instead of waiting for ever
 * with the target stopped (it did: an injected call waited for a report libuv had taken).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { it } from "node:test";
import { applyPatch, readMaps, revertPatch } from "../../native/index.js";
import { compileFixture, patchMemfdPath, processState } from "../helpers/fixtures.js";

it("patches and reverts targets that are its own children, started and patched at once, and lets them run", {
  timeout: 120_000,
}, async () => {
  const exe = await compileFixture("c/counter.c", ["-O1", "-g"]);
  const so = await compileFixture("c/compute_patch.c", ["-O1", "-shared", "-fPIC"]);
  for (let i = 0; i < 20; i++) {
    // Not through startFixture's shell: this process is the target's parent.
    const child = spawn(exe, [], { stdio: "ignore" });
    const pid = child.pid as number;
    try {
      const spec = { id: "child", soPath: so, functions: [{ symbol: "compute", replacement: "compute_fixed" }] };
      assert.equal((await applyPatch(pid, spec)).patch.state, "active");
      assert.ok(
        (await readMaps(pid)).some((m) => m.path === patchMemfdPath("child")),
        "the patch is mapped",
      );
      await revertPatch(pid, "child", { unload: true });
      assert.ok(!(await readMaps(pid)).some((m) => m.path === patchMemfdPath("child")), "and unmapped again");
      const state = await processState(pid);
      assert.ok(state !== null, "the target still runs");
      assert.notEqual(state, "t", "the target is not left stopped");
    } finally {
      // Node may have taken a stop report for its exit: signal the pid itself.
      process.kill(pid, "SIGKILL");
    }
  }
});
