/**
 * `hotpatch apply --lib PATH` names a file of our own file system: a container whose own copy of
 * the library sits at that very path (another file, in a root only its mount namespace has) is not
 * a process that maps it, and is left untouched while the host's process is patched.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readElf } from "../../native/index.js";
import { makeBundle } from "../helpers/agent_harness.js";
import { hotpatch, jsonLines } from "../helpers/cli.js";
import { compileFixture, type RunningFixture, startContained, startFixture } from "../helpers/fixtures.js";

/** The target's next `lib=` line that was surely computed after the last operation. */
async function answer(t: RunningFixture): Promise<string> {
  await t.nextLine(/^lib=/);
  return t.nextLine(/^lib=/);
}

describe("apply --lib with a container mapping its own file under the same path", () => {
  let tmp: string;
  let lib: string;
  let host: RunningFixture;
  let contained: RunningFixture;
  let bundle: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-libns-"));
    lib = await compileFixture("c/libgreet.c", ["-O2", "-shared", "-fPIC"]);
    const usesLib = await compileFixture("c/uses_lib.c", ["-O2", "-g", "-fPIE", "-pie", "-Wl,--no-as-needed", lib]);
    host = await startFixture(usesLib);
    contained = await startContained(tmp, usesLib, [], [usesLib, lib]);
    const patch = await compileFixture("c/lib_patch.c", ["-O2", "-shared", "-fPIC"]);
    bundle = path.join(tmp, "greet.tar");
    const archive = await makeBundle(
      tmp,
      "greet",
      { kind: "library", path: lib, buildId: (await readElf(lib)).buildId ?? "" },
      patch,
      [{ symbol: "greet_value", replacement: "greet_value_v2" }],
    );
    await writeFile(bundle, archive);
  });
  after(async () => {
    await host?.kill();
    await contained?.kill();
    await rm(tmp, { recursive: true, force: true });
  });

  it("patches the host's process only", async () => {
    assert.match(await readFile(`/proc/${contained.pid}/maps`, "utf8"), new RegExp(` ${lib}\n`), "the trap is set");
    const r = await hotpatch(["apply", "--lib", lib, bundle, "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const lines = jsonLines(r.stdout);
    assert.ok(
      lines.some((l) => l.pid === host.pid && l.outcome === "done"),
      r.stdout,
    );
    assert.ok(!lines.some((l) => l.pid === contained.pid), r.stdout);
    assert.match(await answer(host), /^lib=21 /);
    assert.match(await answer(contained), /^lib=11 /);
  });
});
