/** `hotpatch ps` and `hotpatch revert` from fresh processes: the truth comes from the target itself. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { applyPatch } from "../../../native/index.js";
import { hotpatch, jsonLines } from "../../helpers/cli.js";
import { compileFixture, type RunningFixture, startFixture } from "../../helpers/fixtures.js";
import { withoutCapabilities } from "../../helpers/privileges.js";

describe("hotpatch ps / revert", () => {
  let target: RunningFixture;
  let patch: string;
  before(async () => {
    target = await startFixture(
      await compileFixture(["c/stacked_statics_b.c", "c/stacked_statics_a.c"], ["-O2", "-g", "-fPIE", "-pie"]),
    );
    patch = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    await applyPatch(target.pid, {
      id: "fix-b",
      soPath: patch,
      functions: [{ symbol: "stacked_statics_b.c:helper", replacement: "helper_v2" }],
    });
  });
  after(async () => target.kill());

  it("ps --pid --json shows the active patch with its addresses", async () => {
    const r = await hotpatch(["ps", "--pid", String(target.pid), "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const [doc] = jsonLines(r.stdout) as {
      pid: number;
      patches: { id: string; state: string; functions: { symbol: string; address: string }[] }[];
    }[];
    assert.equal(doc?.pid, target.pid);
    assert.equal(doc?.patches[0]?.id, "fix-b");
    assert.equal(doc?.patches[0]?.state, "active");
    assert.match(doc?.patches[0]?.functions[0]?.address ?? "", /^0x[0-9a-f]+$/);
  });

  it("ps without --pid finds every patched process", async () => {
    const r = await hotpatch(["ps"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${target.pid}\\s+fix-b\\s+active`));
  });

  it("ps run without CAP_SYS_PTRACE fails with EPERM_PTRACE and a hint", async () => {
    const r = await hotpatch(["ps", "--pid", String(target.pid)], { launcher: withoutCapabilities(["sys_ptrace"]) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[EPERM_PTRACE\].*CAP_SYS_PTRACE/);
  });

  it("revert --unload restores the original answers and ps shows nothing", async () => {
    const r = await hotpatch(["revert", "--pid", String(target.pid), "fix-b", "--unload", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const summary = jsonLines(r.stdout).find((o) => o.type === "summary");
    assert.equal(summary?.done, 1);
    // Unread lines from before the revert are read first; the next one may still predate it.
    await new Promise((r) => setImmediate(r));
    await target.nextLine(/^answers /);
    assert.match(await target.nextLine(/^answers /), /a=101 b=201/);
    const ps = await hotpatch(["ps", "--pid", String(target.pid)]);
    assert.match(ps.stdout, /carries no patch/);
  });

  it("revert of a patch the process does not carry fails with ENOPATCH", async () => {
    const r = await hotpatch(["revert", "--pid", String(target.pid), "fix-b"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /skipped \[ENOPATCH\]/);
  });

  it("revert without --pid or --exe is a usage error", async () => {
    const r = await hotpatch(["revert", "fix-b"]);
    assert.equal(r.code, 2);
  });
});
