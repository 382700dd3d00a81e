/**
 * Functions of shared libraries: one of a fixture library and one of libc, patched in one process
 * while another process of the same program, mapping the same library files, stays untouched.
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { applyPatch, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

let patched: RunningFixture;
let bystander: RunningFixture;
let patch: string;

async function reading(t: RunningFixture): Promise<string> {
  await t.nextLine(/^lib=/);
  return t.nextLine(/^lib=/);
}

before(async () => {
  const lib = await compileFixture("c/libgreet.c", ["-O2", "-shared", "-fPIC"]);
  const binary = await compileFixture("c/uses_lib.c", ["-O2", "-g", "-fPIE", "-pie", "-Wl,--no-as-needed", lib]);
  patch = await compileFixture("c/lib_patch.c", ["-O2", "-shared", "-fPIC"]);
  patched = await startFixture(binary);
  bystander = await startFixture(binary);
});
after(async () => {
  await patched.kill();
  await bystander.kill();
});

it("patches a library function and a libc function in one process only", async () => {
  assert.equal(await reading(patched), "lib=11 libc=41");
  const r = await applyPatch(patched.pid, {
    id: "libs",
    soPath: patch,
    functions: [
      { symbol: "greet_value", replacement: "greet_value_v2" },
      { symbol: "strtol", replacement: "strtol_v2" },
    ],
  });
  assert.equal(r.patch.functions.length, 2);
  assert.equal(await reading(patched), "lib=21 libc=42");
  assert.equal(await reading(bystander), "lib=11 libc=41", "the other process keeps the original code");
  await revertPatch(patched.pid, "libs", { unload: true });
  assert.equal(await reading(patched), "lib=11 libc=41");
});
