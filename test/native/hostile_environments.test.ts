/**
 * Hostile environments give a clear error naming the cause and the fix, never a hang or a dead
 * target: a seccomp filter that forbids loading code (even one that would kill the process for
 * trying), and a target in a root of its own that lays a symlink trap for the host: the patch is
 * handed over as a memfd, so no host path inside the target's root is ever opened or created.
 */
import assert from "node:assert/strict";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { applyPatch, EngineError, listPatches, revertPatch } from "../../native/index.js";
import { compileFixture, patchMemfdPath, type RunningFixture, startFixture } from "../helpers/fixtures.js";

async function b(t: RunningFixture): Promise<number> {
  await t.nextLine(/^answers /);
  return Number(/b=(\d+)/.exec(await t.nextLine(/^answers /))?.[1]);
}

describe("seccomp", () => {
  let patch: string;
  let binary: string;
  before(async () => {
    patch = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    binary = await compileFixture("c/seccomp_target.c", ["-O2", "-g", "-fPIE", "-pie"]);
  });

  for (const mode of ["errno", "kill"]) {
    it(`a filter that would ${mode === "kill" ? "kill the process for" : "refuse"} mapping code → ESECCOMP, and the target lives on untouched`, async () => {
      const target = await startFixture(binary, [mode]);
      try {
        const before = await readFile(`/proc/${target.pid}/maps`, "utf8");
        await assert.rejects(
          applyPatch(target.pid, {
            id: "s",
            soPath: patch,
            functions: [{ symbol: "helper", replacement: "helper_v2" }],
          }),
          (err: unknown) =>
            err instanceof EngineError && err.code === "ESECCOMP" && /SystemCallFilter|filter/.test(err.message),
        );
        assert.equal(await readFile(`/proc/${target.pid}/maps`, "utf8"), before);
        assert.equal(await b(target), 201);
        assert.ok(target.alive());
      } finally {
        await target.kill();
      }
    });
  }
});

describe("a target in a root of its own whose /tmp is a symlink to a host folder", () => {
  let hostDir: string;
  let victim: string;
  let root: string;
  let target: RunningFixture;
  let patch: string;
  const victimBytes = "host secret, mode 0600\n";
  before(async () => {
    // The host folder holds a 0600 file under the very name the old engine copied the patch to.
    hostDir = await mkdtemp(path.join(os.tmpdir(), "hotpatch-victim-"));
    victim = path.join(hostDir, "hotpatch-ns.so");
    await writeFile(victim, victimBytes, { mode: 0o600 });
    patch = await compileFixture("c/helper_patch.c", ["-O2", "-shared", "-fPIC"]);
    const binary = await compileFixture(
      ["c/stacked_statics_b.c", "c/stacked_statics_a.c"],
      ["-O2", "-g", "-fPIE", "-pie"],
    );
    // A container's root: the system's /usr bound in, its own binary, and /tmp an absolute
    // symlink that only resolves on the host, to the host folder.
    root = await mkdtemp(path.join(os.tmpdir(), "hotpatch-root-"));
    await mkdir(path.join(root, "usr"));
    for (const l of ["bin", "lib", "lib64"]) await symlink(`usr/${l}`, path.join(root, l));
    await copyFile(binary, path.join(root, "target"));
    await chmod(path.join(root, "target"), 0o755);
    await symlink(hostDir, path.join(root, "tmp"));
    target = await startFixture("unshare", [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount --bind /usr ${root}/usr && exec chroot ${root} /target`,
    ]);
  });
  after(async () => {
    await target.kill();
    await rm(hostDir, { recursive: true, force: true });
    await rm(root, { recursive: true, force: true });
  });

  it("the patch works, and the host file the symlink reaches is untouched (nothing is created beside it)", async () => {
    assert.equal(await readlink(`/proc/${target.pid}/root/tmp`), hostDir, "the trap is set: /tmp leads to the host");
    assert.notEqual(
      (await stat(`/proc/${target.pid}/root/`)).ino,
      (await stat("/")).ino,
      "the target has a root of its own",
    );
    const r = await applyPatch(target.pid, {
      id: "ns",
      soPath: patch,
      functions: [{ symbol: "stacked_statics_b.c:helper", replacement: "helper_v2" }],
    }).catch((err: unknown) => err);
    // First the host: whatever the engine answered, nothing of ours was written through the trap.
    assert.equal(await readFile(victim, "utf8"), victimBytes);
    assert.equal((await stat(victim)).mode & 0o7777, 0o600);
    assert.deepEqual(await readdir(hostDir), ["hotpatch-ns.so"]);
    assert.ok(!(r instanceof Error), `the patch is applied: ${String(r)}`);
    assert.equal((r as Awaited<ReturnType<typeof applyPatch>>).patch.soPath, "/memfd:hotpatch-patch-ns");
    assert.equal(await b(target), 901);
    assert.ok((await readFile(`/proc/${target.pid}/maps`, "utf8")).includes(patchMemfdPath("ns")));
    await revertPatch(target.pid, "ns", { unload: true });
    assert.deepEqual(await listPatches(target.pid), []);
    assert.equal(await b(target), 201);
    assert.doesNotMatch(await readFile(`/proc/${target.pid}/maps`, "utf8"), /memfd:hotpatch/);
  });
});
