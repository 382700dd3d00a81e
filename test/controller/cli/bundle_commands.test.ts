/** `hotpatch keygen`, `build` and `inspect` as a user runs them: output, --json, exit codes. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { compileFixture, fixtureSource } from "../../helpers/fixtures.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const bin = path.join(root, "bin/hotpatch.js");

function hotpatch(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("node", [bin, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("hotpatch keygen, build, inspect", () => {
  let tmp: string;
  let target: string;
  let other: string;
  let fix: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-cli-bundle-"));
    target = await compileFixture("c/counter.c", ["-O1", "-fPIE", "-pie"]);
    other = await compileFixture("c/counter.c", ["-O1", "-fno-pie", "-no-pie"]);
    fix = fixtureSource("bundle/fix_scale.c");
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("--help lists build, inspect and keygen", async () => {
    const r = await hotpatch(["--help"]);
    assert.equal(r.code, 0);
    for (const c of ["build", "inspect", "keygen"]) assert.match(r.stdout, new RegExp(`\\n  ${c} `));
  });

  it("keygen --json writes a 0600 private key and a public key, and never overwrites them", async () => {
    const prefix = path.join(tmp, "ops");
    const r = await hotpatch(["keygen", "--out", prefix, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { privateKeyPath: string; publicKeyPath: string; keyId: string };
    assert.equal(doc.privateKeyPath, `${prefix}.key`);
    assert.match(doc.keyId, /^[0-9a-f]{32}$/);
    assert.equal((await stat(doc.privateKeyPath)).mode & 0o777, 0o600);
    assert.match(await readFile(doc.publicKeyPath, "utf8"), /BEGIN PUBLIC KEY/);
    const again = await hotpatch(["keygen", "--out", prefix]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /\[EOUT_EXISTS\]/);
  });

  it("build --sign, then inspect --trusted-key --target: verified, exit 0", async () => {
    const prefix = path.join(tmp, "signer");
    assert.equal((await hotpatch(["keygen", "--out", prefix])).code, 0);
    const out = path.join(tmp, "signed-bundle");
    const built = await hotpatch([
      "build",
      "--target",
      target,
      "--source",
      fix,
      "--function",
      "counter.c:scale=scale_v2",
      "--sign",
      `${prefix}.key`,
      "--id",
      "fix-scale",
      "--out",
      out,
    ]);
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stdout, /built bundle fix-scale in /);
    assert.match(built.stdout, /replaces\s+counter\.c:scale -> scale_v2/);
    assert.match(built.stdout, /signed\s+by key [0-9a-f]{32}/);

    const human = await hotpatch(["inspect", out, "--trusted-key", `${prefix}.pub`, "--target", target]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /signature\s+verified, key/);
    assert.match(human.stdout, /patch\.so\s+\d+ bytes, sha256 [0-9a-f]{64} ok/);
    assert.match(human.stdout, /build-id [0-9a-f]+ matches/);

    const json = await hotpatch(["inspect", out, "--trusted-key", `${prefix}.pub`, "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout) as {
      ok: boolean;
      manifest: { id: string; loader: string };
      signature: { state: string };
    };
    assert.equal(doc.ok, true);
    assert.equal(doc.manifest.id, "fix-scale");
    assert.equal(doc.manifest.loader, "mmap");
    assert.equal(doc.signature.state, "verified");

    const wrongTarget = await hotpatch(["inspect", out, "--target", other, "--json"]);
    assert.equal(wrongTarget.code, 1);
    assert.equal((JSON.parse(wrongTarget.stderr) as { error: { code: string } }).error.code, "EBUILDID");

    const tampered = path.join(tmp, "tampered");
    await cp(out, tampered, { recursive: true });
    const so = await readFile(path.join(tampered, "patch.so"));
    so[300] = (so[300] as number) ^ 0xff;
    await writeFile(path.join(tampered, "patch.so"), so);
    const bad = await hotpatch(["inspect", tampered, "--json"]);
    assert.equal(bad.code, 1);
    assert.equal((JSON.parse(bad.stdout) as { hash: { ok: boolean } }).hash.ok, false);
    assert.equal((JSON.parse(bad.stderr) as { error: { code: string } }).error.code, "EBUNDLE_HASH");
  });

  it("build --tar --json writes one .tar that inspect reads; unsigned fails when a key is required", async () => {
    const tarPath = path.join(tmp, "fix.tar");
    const r = await hotpatch([
      "build",
      "--target",
      target,
      "--source",
      fix,
      "--function",
      "counter.c:scale=scale_v2",
      "--out",
      tarPath,
      "--tar",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as {
      bundle: string;
      tar: string;
      manifest: { functions: unknown[] };
      warnings: string[];
    };
    assert.equal(doc.tar, tarPath);
    assert.deepEqual(doc.manifest.functions, [{ symbol: "counter.c:scale", replacement: "scale_v2" }]);
    const inspected = await hotpatch(["inspect", tarPath]);
    assert.equal(inspected.code, 0, inspected.stderr);
    assert.match(inspected.stdout, /signature\s+unsigned/);
    const prefix = path.join(tmp, "k2");
    await hotpatch(["keygen", "--out", prefix]);
    const required = await hotpatch(["inspect", tarPath, "--trusted-key", `${prefix}.pub`]);
    assert.equal(required.code, 1);
    assert.match(required.stderr, /\[EBUNDLE_UNSIGNED\]/);
  });

  it("a failing check exits 1 with its code; a compile error shows the compiler's message", async () => {
    const missing = await hotpatch([
      "build",
      "--target",
      target,
      "--source",
      fix,
      "--function",
      "nope=scale_v2",
      "--out",
      path.join(tmp, "x1"),
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /\[ENOSYMBOL\].*no function nope/);
    const broken = await hotpatch([
      "build",
      "--target",
      target,
      "--source",
      fixtureSource("bundle/syntax_error.c"),
      "--function",
      "scale",
      "--out",
      path.join(tmp, "x2"),
      "--json",
    ]);
    assert.equal(broken.code, 1);
    const err = (JSON.parse(broken.stderr) as { error: { code: string; message: string } }).error;
    assert.equal(err.code, "ECOMPILE");
    assert.match(err.message, /error: expected expression/);
  });

  it("a wrong command line exits 2", async () => {
    const noOut = await hotpatch(["build", "--target", target, "--source", fix, "--function", "scale"]);
    assert.equal(noOut.code, 2);
    assert.match(noOut.stderr, /--out/);
    const badLoader = await hotpatch([
      "build",
      "--target",
      target,
      "--source",
      fix,
      "--function",
      "scale",
      "--loader",
      "magic",
      "--out",
      path.join(tmp, "y"),
    ]);
    assert.equal(badLoader.code, 2);
    const badSpec = await hotpatch([
      "build",
      "--target",
      target,
      "--source",
      fix,
      "--function",
      "a b",
      "--out",
      path.join(tmp, "z"),
    ]);
    assert.equal(badSpec.code, 2);
    assert.match(badSpec.stderr, /\[EBAD_ARGUMENT\]/);
    const noFunction = await hotpatch(["build", "--target", target, "--source", fix, "--out", path.join(tmp, "w")]);
    assert.equal(noFunction.code, 2);
  });

  it("inspect of something that is not a bundle exits 1 with EBAD_BUNDLE", async () => {
    const r = await hotpatch(["inspect", tmp]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[EBAD_BUNDLE\].*manifest\.json is missing/);
  });
});
