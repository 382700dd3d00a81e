/**
 * The ELF reader (libelf) against real binaries: fixtures compiled here as PIE and non-PIE, a
 * stripped copy, a system library; binutils' readelf is the independent witness.
 */
import assert from "node:assert/strict";
import { copyFile, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type ElfInfo, EngineError, readBuildId, readElf } from "../../native/index.js";
import { compileFixture, runTool } from "../helpers/fixtures.js";

async function readelfBuildId(file: string): Promise<string> {
  const notes = await runTool("readelf", ["-n", file]);
  const m = /Build ID: ([0-9a-f]+)/.exec(notes);
  assert.ok(m, `readelf found no build-id in ${file}`);
  return m[1] as string;
}

async function readelfLoadSegments(file: string): Promise<number> {
  const out = await runTool("readelf", ["-lW", file]);
  return out.split("\n").filter((l) => /^\s+LOAD\s/.test(l)).length;
}

function findSymbol(info: ElfInfo, name: string, table: "symtab" | "dynsym") {
  return info.symbols.find((s) => s.name === name && s.table === table);
}

describe("ELF reader", () => {
  let pie: string;
  let nonPie: string;
  let tmp: string;

  before(async () => {
    pie = await compileFixture("c/counter.c", ["-O1", "-g", "-fPIE", "-pie", "-rdynamic"]);
    nonPie = await compileFixture("c/counter.c", ["-O1", "-g", "-fno-pie", "-no-pie"]);
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-elf-"));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("reads a PIE's type, build-id and load segments as readelf does", async () => {
    const info = await readElf(pie);
    assert.equal(info.type, "shared"); // a PIE is ET_DYN
    assert.equal(info.machine, 62);
    assert.equal(info.bits, 64);
    assert.equal(info.buildId, await readelfBuildId(pie));
    assert.equal(info.programHeaders.filter((p) => p.type === 1).length, await readelfLoadSegments(pie));
  });

  it("reads a non-PIE executable with absolute addresses", async () => {
    const info = await readElf(nonPie);
    assert.equal(info.type, "executable");
    assert.equal(info.buildId, await readelfBuildId(nonPie));
    const compute = findSymbol(info, "compute", "symtab");
    assert.ok(compute);
    assert.ok(compute.value >= 0x400000n, `non-PIE code sits at its link address, got 0x${compute.value.toString(16)}`);
  });

  it("finds static functions and static objects in .symtab with sizes and their source file", async () => {
    const info = await readElf(pie);
    const scale = findSymbol(info, "scale", "symtab");
    const counter = findSymbol(info, "counter", "symtab");
    assert.ok(scale, "static function scale is listed");
    assert.ok(counter, "static object counter is listed");
    assert.equal(scale.kind, "function");
    assert.equal(scale.binding, "local");
    assert.equal(scale.file, "counter.c");
    assert.ok(scale.size > 0n);
    assert.equal(counter.kind, "object");
    assert.equal(counter.size, 4n);

    // Cross-check value and size with readelf's symbol table.
    const line = (await runTool("readelf", ["-sW", pie])).split("\n").find((l) => / scale$/.test(l.trim()));
    assert.ok(line);
    const [, value, size] = line.trim().split(/\s+/);
    assert.equal(BigInt(`0x${value}`), scale.value);
    assert.equal(BigInt(size as string), scale.size);
  });

  it("reads .dynsym: exported functions and undefined imports", async () => {
    const info = await readElf(pie);
    const compute = findSymbol(info, "compute", "dynsym");
    assert.ok(compute?.defined, "-rdynamic exports compute");
    const printf = info.symbols.find((s) => s.table === "dynsym" && s.name.startsWith("printf"));
    assert.ok(printf);
    assert.equal(printf.defined, false);
  });

  it("still reads .dynsym and the build-id of a stripped binary", async () => {
    const stripped = path.join(tmp, "counter-stripped");
    await copyFile(pie, stripped);
    await runTool("strip", ["--strip-all", stripped]);
    const info = await readElf(stripped);
    assert.equal(info.symbols.filter((s) => s.table === "symtab").length, 0);
    assert.ok(findSymbol(info, "compute", "dynsym"));
    assert.equal(info.buildId, (await readElf(pie)).buildId);
  });

  it("reads a system library (libc) that the running node has mapped", async () => {
    const maps = await runTool("cat", [`/proc/${process.pid}/maps`]);
    const libc = maps
      .split("\n")
      .map((l) => l.split(/\s+/)[5] ?? "")
      .find((p) => /\/libc\.so\.6$/.test(p));
    assert.ok(libc, "node maps libc");
    const info = await readElf(libc);
    assert.equal(info.type, "shared");
    assert.equal(info.buildId, await readelfBuildId(libc));
    const malloc = findSymbol(info, "malloc", "dynsym");
    assert.ok(malloc?.defined && malloc.kind === "function" && malloc.size > 0n);
  });

  it("refuses a file that is not ELF with EBAD_ELF", async () => {
    const junk = path.join(tmp, "junk");
    await writeFile(junk, "#!/bin/sh\necho not elf\n");
    await assert.rejects(readElf(junk), (err: unknown) => err instanceof EngineError && err.code === "EBAD_ELF");
  });

  it("refuses a truncated ELF file with EBAD_ELF", async () => {
    const cut = path.join(tmp, "cut");
    await copyFile(pie, cut);
    await truncate(cut, 100);
    await assert.rejects(readElf(cut), (err: unknown) => err instanceof EngineError && err.code === "EBAD_ELF");
  });

  it("readBuildId gives the build-id readelf shows, without the rest: PIE, non-PIE, stripped, libc", async () => {
    const stripped = path.join(tmp, "counter-stripped-id");
    await copyFile(pie, stripped);
    await runTool("strip", ["--strip-all", stripped]);
    const libc = (await runTool("cat", [`/proc/${process.pid}/maps`]))
      .split("\n")
      .map((l) => l.split(/\s+/)[5] ?? "")
      .find((p) => /\/libc\.so\.6$/.test(p));
    assert.ok(libc);
    for (const file of [pie, nonPie, stripped, libc]) assert.equal(await readBuildId(file), await readelfBuildId(file));
  });

  it("readBuildId answers null for a file linked without a build-id", async () => {
    const none = await compileFixture("c/counter.c", ["-O1", "-Wl,--build-id=none"]);
    assert.equal((await readElf(none)).buildId, null);
    assert.equal(await readBuildId(none), null);
  });

  it("readBuildId refuses what readElf refuses: not ELF, truncated (EBAD_ELF), missing (EELF_OPEN)", async () => {
    const junk = path.join(tmp, "junk-id");
    await writeFile(junk, "#!/bin/sh\necho not elf\n");
    const cut = path.join(tmp, "cut-id");
    await copyFile(pie, cut);
    await truncate(cut, 100);
    const isCode = (code: string) => (err: unknown) => err instanceof EngineError && err.code === code;
    await assert.rejects(readBuildId(junk), isCode("EBAD_ELF"));
    await assert.rejects(readBuildId(cut), isCode("EBAD_ELF"));
    await assert.rejects(readBuildId(path.join(tmp, "does-not-exist-id")), isCode("EELF_OPEN"));
  });

  it("reports a missing file with EELF_OPEN and its path", async () => {
    const missing = path.join(tmp, "does-not-exist");
    await assert.rejects(
      readElf(missing),
      (err: unknown) => err instanceof EngineError && err.code === "EELF_OPEN" && err.context.path === missing,
    );
  });
});
