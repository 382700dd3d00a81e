/**
 * Every kind of bad input gets its stable error code, and the target keeps running with its memory
 * map exactly as before (read from /proc/PID/maps) and its answers unchanged.
 */
import assert from "node:assert/strict";
import { copyFile, mkdtemp, open, readFile, rm, truncate, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { PatchFunctionSpec } from "../../native/index.js";
import { activatePatch, applyPatch, EngineError, listPatches, loadPatch, unloadPatch } from "../../native/index.js";
import { waitFor } from "../helpers/agent_harness.js";
import { compileFixture, patchMemfdPath, type RunningFixture, startFixture } from "../helpers/fixtures.js";

const isCode = (code: string) => (err: unknown) => err instanceof EngineError && err.code === code;

async function answers(target: RunningFixture): Promise<string> {
  await target.nextLine(/^answers /);
  return target.nextLine(/^answers /);
}

describe("bad inputs leave the target as it was and running", () => {
  let target: RunningFixture;
  let patch: string;
  let tmp: string;
  let baseline: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-bad-"));
    patch = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    target = await startFixture(
      await compileFixture(
        ["c/stacked_statics_b.c", "c/stacked_statics_a.c"],
        ["-O2", "-g", "-fPIE", "-pie", "-fcf-protection=full"],
      ),
    );
    baseline = await answers(target);
  });
  after(async () => {
    await target.kill();
    await rm(tmp, { recursive: true, force: true });
  });

  async function expectRefused(code: string, soPath: string, fn: PatchFunctionSpec, message = /./): Promise<void> {
    const before = await readFile(`/proc/${target.pid}/maps`, "utf8");
    await assert.rejects(loadPatch(target.pid, { id: "bad", soPath, functions: [fn] }), (err: unknown) => {
      assert.ok(
        isCode(code)(err),
        `expected ${code}, got ${(err as { code?: string }).code}: ${(err as Error).message}`,
      );
      assert.match((err as Error).message, message);
      return true;
    });
    assert.equal(await readFile(`/proc/${target.pid}/maps`, "utf8"), before, "memory map unchanged");
    assert.deepEqual(await listPatches(target.pid), []);
    assert.equal(await answers(target), baseline, "still answering as before");
  }

  const b = "stacked_statics_b.c:helper";

  it("an unknown target function → ENOSYMBOL", () =>
    expectRefused("ENOSYMBOL", patch, { symbol: "no_such_fn", replacement: "helper_v2" }));

  it("a replacement the patch does not define → ENOSYMBOL", () =>
    expectRefused("ENOSYMBOL", patch, { symbol: b, replacement: "nope" }));

  it("a function shorter than the jump → EFUNC_TOO_SHORT", () =>
    expectRefused("EFUNC_TOO_SHORT", patch, { symbol: "tiny", replacement: "tiny_v2" }));

  it("a file that is not ELF → EBAD_ELF", async () => {
    const junk = path.join(tmp, "junk.so");
    await writeFile(junk, "not a shared object\n");
    await expectRefused("EBAD_ELF", junk, { symbol: b, replacement: "helper_v2" });
  });

  it("a truncated shared object → EBAD_ELF", async () => {
    const cut = path.join(tmp, "cut.so");
    await copyFile(patch, cut);
    await truncate(cut, 3000);
    await expectRefused("EBAD_ELF", cut, { symbol: b, replacement: "helper_v2" });
  });

  it("a shared object for another architecture → EBAD_ELF", async () => {
    const arm = path.join(tmp, "arm.so");
    await copyFile(patch, arm);
    const fh = await open(arm, "r+");
    await fh.write(Buffer.from([183, 0]), 0, 2, 18); // e_machine = EM_AARCH64
    await fh.close();
    await expectRefused("EBAD_ELF", arm, { symbol: b, replacement: "helper_v2" });
  });

  it("a patch that defines thread-local storage of its own → EUNSUPPORTED_PATCH naming it", async () => {
    const tls = await compileFixture("c/bad_tls_patch.c", ["-O2", "-shared", "-fPIC"]);
    await expectRefused(
      "EUNSUPPORTED_PATCH",
      tls,
      { symbol: b, replacement: "helper_v2" },
      /defines thread-local variables \(per_thread\).*cannot add thread-local storage/,
    );
  });

  it("a patch using a thread-local variable the target does not have → ENOSYMBOL", async () => {
    const reloc = await compileFixture("c/bad_reloc_patch.c", ["-O2", "-shared", "-fPIC"]);
    await expectRefused(
      "ENOSYMBOL",
      reloc,
      { symbol: b, replacement: "helper_v2" },
      /thread-local variable 'request_id'/,
    );
  });

  it("an unknown patch id → ENOPATCH", async () => {
    await assert.rejects(activatePatch(target.pid, "never-loaded"), isCode("ENOPATCH"));
    await assert.rejects(unloadPatch(target.pid, "never-loaded"), isCode("ENOPATCH"));
  });

  it("cancelling a wait for a safe moment → ECANCELLED, nothing left behind", async () => {
    const loop = await compileFixture("c/patch_target.c", ["-O2", "-fPIE", "-pie", "-pthread"]);
    const busy = await startFixture(loop, ["1"]);
    try {
      const loopPatch = await compileFixture("c/patch_compute.c", ["-O2", "-shared", "-fPIC"]);
      const before = await readFile(`/proc/${busy.pid}/maps`, "utf8");
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      await assert.rejects(
        applyPatch(
          busy.pid,
          { id: "c", soPath: loopPatch, functions: [{ symbol: "event_loop", replacement: "event_loop_v2" }] },
          { safetyTimeoutMs: 30_000, signal: ac.signal },
        ),
        isCode("ECANCELLED"),
      );
      assert.equal(await readFile(`/proc/${busy.pid}/maps`, "utf8"), before);
      assert.ok(busy.alive());
    } finally {
      await busy.kill();
    }
  });
});

describe("targets that cannot be patched", () => {
  let patch: string;
  before(async () => {
    patch = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
  });
  const spec = () => ({ id: "x", soPath: patch, functions: [{ symbol: "helper", replacement: "helper_v2" }] });

  it("a pid with no process → ENOPROCESS", async () => {
    const gone = await startFixture(await compileFixture("c/counter.c", ["-O1"]));
    await gone.kill();
    await assert.rejects(listPatches(gone.pid), isCode("ENOPROCESS"));
    await assert.rejects(applyPatch(gone.pid, spec()), isCode("ENOPROCESS"));
  });

  it("a zombie → EZOMBIE", async () => {
    const parent = await startFixture(await compileFixture("c/zombie_maker.c", ["-O1"]));
    try {
      const zombie = Number(/zombie (\d+)/.exec(parent.output())?.[1]);
      // The child may not have finished exiting when its parent printed its pid.
      await waitFor(`process ${zombie} to be a zombie`, async () =>
        /State:\s+Z/.test(await readFile(`/proc/${zombie}/status`, "utf8")) ? true : undefined,
      );
      await assert.rejects(applyPatch(zombie, spec()), isCode("EZOMBIE"));
    } finally {
      await parent.kill();
    }
  });

  it("a process already traced by a debugger → ETRACED naming the tracer, and it keeps running", async () => {
    const target = await startFixture(await compileFixture("c/counter.c", ["-O1", "-g"]));
    const tracer = await startFixture(await compileFixture("c/tracer.c", ["-O1"]), [String(target.pid)]);
    try {
      await assert.rejects(
        applyPatch(target.pid, spec()),
        (err: unknown) => isCode("ETRACED")(err) && (err as Error).message.includes(String(tracer.pid)),
      );
    } finally {
      await tracer.kill();
      await target.kill();
    }
  });

  it("a target that exits inside an injected call → ETARGET_EXITED, and its own parent sees it end", async () => {
    const target = await startFixture(await compileFixture("c/patch_target.c", ["-O2", "-fPIE", "-pie", "-pthread"]), [
      "2",
    ]);
    try {
      const endsIt = await compileFixture("c/exit_in_constructor_patch.c", ["-O2", "-shared", "-fPIC"]);
      await assert.rejects(
        applyPatch(target.pid, {
          id: "ends-it",
          soPath: endsIt,
          loader: "dlopen",
          functions: [{ symbol: "compute", replacement: "compute_v2" }],
        }),
        isCode("ETARGET_EXITED"),
      );
      // A tracer that never reaps a dead tracee hides its death from the real parent, which then
      // waits forever (a supervisor would never restart the service).
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve("still not reaped by its parent"), 10_000);
      });
      assert.equal(await Promise.race([target.ended.then(() => "reaped"), gaveUp]), "reaped");
      clearTimeout(timer);
    } finally {
      await target.kill();
    }
  });

  it("a target killed at any moment of an operation is let go: its own parent always sees it end", {
    timeout: 180_000,
  }, async () => {
    const binary = await compileFixture("c/patch_target.c", ["-O2", "-fPIE", "-pie", "-pthread"]);
    const loopPatch = await compileFixture("c/patch_compute.c", ["-O2", "-shared", "-fPIC"]);
    let reaped = 0;
    for (let i = 0; i < 25; i++) {
      const target = await startFixture(binary, ["16"]);
      // event_loop never leaves its thread's stack: the engine stops and checks the threads again and again.
      const applying = applyPatch(
        target.pid,
        { id: `k${i}`, soPath: loopPatch, functions: [{ symbol: "event_loop", replacement: "event_loop_v2" }] },
        { safetyTimeoutMs: 30_000 },
      ).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, (i * 7) % 60));
      process.kill(target.pid, "SIGKILL");
      const err = await applying;
      assert.ok(isCode("ETARGET_EXITED")(err) || isCode("ENOPROCESS")(err) || isCode("EZOMBIE")(err), String(err));
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`process ${target.pid} (round ${i}) never reaped by its parent`), 10_000);
      });
      const outcome = await Promise.race([target.ended.then(() => "reaped"), gaveUp]);
      clearTimeout(timer);
      assert.equal(outcome, "reaped");
      reaped++;
    }
    assert.equal(reaped, 25);
  });

  it("a target that exits while the engine waits for a safe moment → ETARGET_EXITED", async () => {
    const busy = await startFixture(await compileFixture("c/patch_target.c", ["-O2", "-fPIE", "-pie", "-pthread"]), [
      "1",
    ]);
    const loopPatch = await compileFixture("c/patch_compute.c", ["-O2", "-shared", "-fPIC"]);
    try {
      const applying = applyPatch(
        busy.pid,
        { id: "e", soPath: loopPatch, functions: [{ symbol: "event_loop", replacement: "event_loop_v2" }] },
        { safetyTimeoutMs: 30_000 },
      );
      applying.catch(() => undefined);
      // Killed only once the patch is mapped: the engine is then past loading and waiting for the
      // thread to leave event_loop (a kill before it attached would rightly be ENOPROCESS).
      await waitFor("the patch to be mapped into the target", async () =>
        (await readFile(`/proc/${busy.pid}/maps`, "utf8")).includes(patchMemfdPath("e")) ? true : undefined,
      );
      await busy.kill();
      await assert.rejects(applying, isCode("ETARGET_EXITED"));
    } finally {
      await busy.kill();
    }
  });
});
