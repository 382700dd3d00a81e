/** The `hotpatch` command as a user runs it: help, version, the elf command, exit codes. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { compileFixture, runTool } from "../helpers/fixtures.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(root, "bin/hotpatch.js");

function hotpatch(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("node", [bin, ...args], (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("hotpatch CLI", () => {
  let fixture: string;
  before(async () => {
    fixture = await compileFixture("c/counter.c", ["-O1", "-fPIE", "-pie"]);
  });

  it("--help lists working commands and the exit codes", async () => {
    const r = await hotpatch(["--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /elf \[options\] <file>/);
    assert.match(r.stdout, /Exit codes:/);
  });

  it("--version prints the package version", async () => {
    const r = await hotpatch(["--version"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+/);
  });

  it("elf --json prints the build-id and the matching static symbol", async () => {
    const r = await hotpatch(["elf", fixture, "--symbols", "scale", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { buildId: string; symbols: { name: string; value: string; file?: string }[] };
    const notes = await runTool("readelf", ["-n", fixture]);
    assert.ok(notes.includes(doc.buildId));
    const scale = doc.symbols.find((s) => s.name === "scale");
    assert.ok(scale);
    assert.match(scale.value, /^0x[0-9a-f]+$/);
    assert.equal(scale.file, "counter.c");
  });

  it("a missing file fails with exit code 1 and a coded message", async () => {
    const r = await hotpatch(["elf", "/nonexistent/binary"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[EELF_OPEN\].*\/nonexistent\/binary/);
  });

  it("a missing file with --json reports the error as JSON on stderr", async () => {
    const r = await hotpatch(["elf", "/nonexistent/binary", "--json"]);
    assert.equal(r.code, 1);
    assert.equal((JSON.parse(r.stderr) as { error: { code: string } }).error.code, "EELF_OPEN");
  });

  it("an unknown command is a usage error (exit code 2)", async () => {
    const r = await hotpatch(["no-such-command"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command/);
  });
});
