/**
 * Near trampolines: a replacement beyond ±2 GiB of the old function is reached by a 5-byte jump to a
 * slot of a page placed within reach of it, so a 12-byte C++ function (its throw split into
 * check.cold) and a 5-byte one are patchable with either loader, and an exception thrown by the
 * replacement is still caught by the target's caller. Observed from outside: the target's answers,
 * the bytes at the old entry and in the slot (/proc/PID/mem), and the page in /proc/PID/maps.
 */
import assert from "node:assert/strict";
import { open, readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { applyPatch, type OpOptions, type PatchedFunction, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

const REL32_REACH = 1n << 31n;
const PAGE = 4096n;

async function readMemory(pid: number, address: bigint, length: number): Promise<Buffer> {
  const mem = await open(`/proc/${pid}/mem`, "r");
  try {
    const buf = Buffer.alloc(length);
    await mem.read(buf, 0, length, Number(address));
    return buf;
  } finally {
    await mem.close();
  }
}

/** Whether /proc/PID/maps has a mapping that starts at `start`. */
async function mapsHasMappingAt(pid: number, start: bigint): Promise<boolean> {
  const text = await readFile(`/proc/${pid}/maps`, "utf8");
  return text.split("\n").some((line) => line.startsWith(`${start.toString(16)}-`));
}

const distance = (a: bigint, b: bigint) => (a > b ? a - b : b - a);

/** Checks, from the target's memory, that the entry jumps to the slot and the slot to the replacement. */
async function assertThroughTrampoline(pid: number, f: PatchedFunction | undefined): Promise<bigint> {
  assert.ok(f, "the patch records the function");
  assert.equal(f.jump, "trampoline");
  assert.ok(f.trampoline !== null, "a trampoline slot is recorded");
  const slot = f.trampoline;
  assert.ok(distance(f.replacement, f.site) >= REL32_REACH, "the replacement is beyond rel32 reach");
  assert.ok(distance(slot, f.site) < REL32_REACH, "the slot is within rel32 reach");
  const entry = await readMemory(pid, f.site, 5);
  assert.equal(entry[0], 0xe9, "a 5-byte E9 jump at the old entry");
  assert.equal(f.site + 5n + BigInt(entry.readInt32LE(1)), slot, "the entry jumps to the slot");
  const code = await readMemory(pid, slot, 14);
  assert.deepEqual([...code.subarray(0, 6)], [0xff, 0x25, 0, 0, 0, 0], "the slot is `jmp *0(%rip)`");
  assert.equal(code.readBigUInt64LE(6), f.replacement, "the slot jumps to the replacement");
  const page = slot & ~(PAGE - 1n);
  assert.ok(await mapsHasMappingAt(pid, page), "the trampoline page is mapped");
  return page;
}

const loaders: { loader: "mmap" | "dlopen"; options: OpOptions }[] = [
  // ld.so places a library far from a PIE executable; the mmap loader is told to.
  { loader: "dlopen", options: {} },
  { loader: "mmap", options: { placement: "far" } },
];

for (const { loader, options } of loaders) {
  describe(`a 12-byte C++ function patched through a far ${loader} patch`, () => {
    let target: RunningFixture;
    let patch: string;

    async function reading(): Promise<string> {
      await target.nextLine(/^checked /);
      await target.nextLine(/^checked /);
      return target.nextLine(/^checked /);
    }

    before(async () => {
      const binary = await compileFixture("cxx/short_check_target.cc", ["-O2", "-g", "-fPIE", "-pie"], "g++");
      patch = await compileFixture("cxx/short_check_patch.cc", ["-O2", "-shared", "-fPIC"], "g++");
      target = await startFixture(binary);
    });
    after(async () => target.kill());

    let applied: PatchedFunction | undefined;
    let page = 0n;
    let entryBefore: Buffer;

    it("new calls go through a near trampoline, and the replacement's exception reaches the caller's catch", async () => {
      assert.equal(await reading(), "checked value=7 scaled=15 caught=too big v1");
      const r = await applyPatch(
        target.pid,
        { id: "check", soPath: patch, loader, functions: [{ symbol: "_Z5checki", replacement: "check_v2" }] },
        options,
      );
      applied = r.patch.functions[0];
      assert.equal(applied?.size, 12n);
      entryBefore = Buffer.from(applied?.originalBytes ?? "", "hex");
      page = await assertThroughTrampoline(target.pid, applied);
      assert.equal(await reading(), "checked value=8 scaled=15 caught=too big v2");
      assert.ok(target.alive());
    });

    it("revert with unload restores the entry's bytes and frees the trampoline page", async () => {
      assert.ok(applied, "applied by the test before");
      await revertPatch(target.pid, "check", { unload: true });
      assert.deepEqual(await readMemory(target.pid, applied.site, 5), entryBefore);
      assert.equal(entryBefore.length, 5);
      assert.ok(!(await mapsHasMappingAt(target.pid, page)), "the trampoline page is unmapped");
      assert.equal(await reading(), "checked value=7 scaled=15 caught=too big v1");
      assert.ok(target.alive());
    });
  });
}

describe("one trampoline page shared by the patches of a process", () => {
  let target: RunningFixture;
  let patch: string;

  async function reading(): Promise<string> {
    await target.nextLine(/^checked /);
    await target.nextLine(/^checked /);
    return target.nextLine(/^checked /);
  }

  before(async () => {
    const binary = await compileFixture("cxx/short_check_target.cc", ["-O2", "-g", "-fPIE", "-pie"], "g++");
    patch = await compileFixture("cxx/short_check_patch.cc", ["-O2", "-shared", "-fPIC"], "g++");
    target = await startFixture(binary);
  });
  after(async () => target.kill());

  it("a 5-byte function and a 12-byte one share the page, which lives until its last user is unloaded", async () => {
    const far: OpOptions = { placement: "far" };
    const check = await applyPatch(
      target.pid,
      { id: "check", soPath: patch, functions: [{ symbol: "_Z5checki", replacement: "check_v2" }] },
      far,
    );
    const scale = await applyPatch(
      target.pid,
      { id: "scale", soPath: patch, functions: [{ symbol: "_Z5scalei", replacement: "scale_v2" }] },
      far,
    );
    assert.equal(scale.patch.functions[0]?.size, 5n);
    const page = await assertThroughTrampoline(target.pid, check.patch.functions[0]);
    assert.equal(await assertThroughTrampoline(target.pid, scale.patch.functions[0]), page, "one page for both");
    assert.notEqual(check.patch.functions[0]?.trampoline, scale.patch.functions[0]?.trampoline);
    assert.equal(await reading(), "checked value=8 scaled=22 caught=too big v2");

    await revertPatch(target.pid, "check", { unload: true });
    assert.ok(await mapsHasMappingAt(target.pid, page), "still used by the other patch");
    assert.equal(await reading(), "checked value=7 scaled=22 caught=too big v1");
    await revertPatch(target.pid, "scale", { unload: true });
    assert.ok(!(await mapsHasMappingAt(target.pid, page)), "freed with its last user");
    assert.equal(await reading(), "checked value=7 scaled=15 caught=too big v1");
  });
});
