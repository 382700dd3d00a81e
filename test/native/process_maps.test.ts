/** Reading the mappings of a live process, checked against the running fixture's own ELF file. */
import assert from "node:assert/strict";
import { realpath } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { EngineError, readElf, readMaps } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

describe("process mappings", () => {
  let target: RunningFixture;
  let binary: string;

  before(async () => {
    binary = await realpath(await compileFixture("c/counter.c", ["-O1", "-fPIE", "-pie"]));
    target = await startFixture(binary);
  });
  after(async () => {
    await target.kill();
  });

  it("lists the executable's code mapping where its PT_LOAD segment says", async () => {
    const maps = await readMaps(target.pid);
    const own = maps.filter((m) => m.path === binary);
    assert.ok(own.length >= 2, "the binary is mapped in several segments");
    const code = own.find((m) => m.perms === "r-xp");
    assert.ok(code, "one mapping of the binary is executable");

    // The load base is where file offset 0 is mapped; the executable PT_LOAD must land in the r-x mapping.
    const base = own.find((m) => m.offset === 0n)?.start;
    assert.ok(base !== undefined);
    const info = await readElf(binary);
    const textSegment = info.programHeaders.find((p) => p.type === 1 && (p.flags & 1) !== 0);
    assert.ok(textSegment);
    const textStart = base + textSegment.vaddr;
    assert.ok(textStart >= code.start && textStart < code.end);
  });

  it("names pseudo-mappings and keeps anonymous ones", async () => {
    const maps = await readMaps(target.pid);
    assert.ok(maps.some((m) => m.path === "[stack]"));
    assert.ok(maps.every((m) => m.end > m.start));
    assert.ok(maps.some((m) => m.path === "[vsyscall]" || m.path === "[vdso]"));
  });

  it("reports a process that does not exist with ENOPROCESS", async () => {
    const gone = await startFixture(binary);
    await gone.kill();
    await assert.rejects(
      readMaps(gone.pid),
      (err: unknown) => err instanceof EngineError && err.code === "ENOPROCESS" && err.context.pid === gone.pid,
    );
  });
});
