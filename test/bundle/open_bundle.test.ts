/**
 * `openBundle` on real bundles built by the tests: signatures with keygen keys, and every kind of
 * damaged or hostile bundle (tampering, missing files, links, hostile tar entries), each with its code.
 */
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  BundleError,
  buildBundle,
  generateKeyPair,
  inspectBundle,
  openBundle,
  packBundle,
  writeKeyPair,
} from "../../bundle/index.js";
import { compileFixture, fixtureSource, runTool } from "../helpers/fixtures.js";

function code(expected: string, match?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof BundleError, `expected a BundleError, got ${String(err)}`);
    assert.equal(err.code, expected, err.message);
    if (match) assert.match(err.message, match);
    return true;
  };
}

describe("openBundle", () => {
  let tmp: string;
  let signed: string;
  let unsigned: string;
  let keys: { privateKeyPath: string; publicKeyPath: string; keyId: string };
  let otherKeys: { privateKeyPath: string; publicKeyPath: string; keyId: string };
  let n = 0;

  /** A fresh copy of a bundle directory to damage. */
  async function copy(dir: string): Promise<string> {
    const dest = path.join(tmp, `copy-${++n}`);
    await cp(dir, dest, { recursive: true });
    return dest;
  }

  async function flipByte(file: string, at: number): Promise<void> {
    const bytes = await readFile(file);
    const i = at < 0 ? bytes.length + at : at;
    bytes[i] = (bytes[i] as number) ^ 0x01;
    await writeFile(file, bytes);
  }

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-open-test-"));
    const target = await compileFixture("c/counter.c", ["-O1", "-fPIE", "-pie"]);
    keys = await writeKeyPair(path.join(tmp, "ops"));
    otherKeys = await writeKeyPair(path.join(tmp, "someone-else"));
    signed = path.join(tmp, "signed");
    unsigned = path.join(tmp, "unsigned");
    const common = { target, source: fixtureSource("bundle/fix_scale.c"), functions: ["counter.c:scale=scale_v2"] };
    await buildBundle({ ...common, out: signed, signKey: keys.privateKeyPath });
    await buildBundle({ ...common, out: unsigned });
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("keygen writes a private key only its owner can read, and the matching public key", async () => {
    assert.equal((await stat(keys.privateKeyPath)).mode & 0o777, 0o600);
    const pub = await runTool("openssl", ["pkey", "-in", keys.privateKeyPath, "-pubout"]);
    assert.equal(pub.trim(), (await readFile(keys.publicKeyPath, "utf8")).trim());
    await assert.rejects(writeKeyPair(path.join(tmp, "ops")), code("EOUT_EXISTS"));
  });

  it("verifies a bundle signed with a keygen key against that public key", async () => {
    const bundle = await openBundle(signed, { trustedKeys: [keys.publicKeyPath] });
    try {
      assert.deepEqual(bundle.signature, { keyId: keys.keyId });
      assert.equal(bundle.signedBy, keys.keyId);
      // The signature verifies with openssl too: it is plain ed25519 over the exact manifest bytes.
      const sig = JSON.parse(await readFile(path.join(signed, "manifest.sig"), "utf8")) as { signature: string };
      const sigFile = path.join(tmp, "raw.sig");
      await writeFile(sigFile, Buffer.from(sig.signature, "base64"));
      const ok = await runTool("openssl", [
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        keys.publicKeyPath,
        "-rawin",
        "-in",
        path.join(signed, "manifest.json"),
        "-sigfile",
        sigFile,
      ]);
      assert.match(ok, /Signature Verified Successfully/);
    } finally {
      await bundle.dispose();
    }
  });

  it("accepts PEM text as a trusted key", async () => {
    const bundle = await openBundle(signed, { trustedKeys: [await readFile(keys.publicKeyPath, "utf8")] });
    await bundle.dispose();
    assert.equal(bundle.signature?.keyId, keys.keyId);
  });

  it("refuses a signature by a key that is not trusted with EBUNDLE_SIGNATURE", async () => {
    await assert.rejects(
      openBundle(signed, { trustedKeys: [otherKeys.publicKeyPath] }),
      code("EBUNDLE_SIGNATURE", /not among/),
    );
  });

  it("refuses a manifest changed by one byte with EBUNDLE_SIGNATURE", async () => {
    const dir = await copy(signed);
    const manifest = path.join(dir, "manifest.json");
    const text = await readFile(manifest, "utf8");
    await writeFile(manifest, text.replace('"loader": "mmap"', '"loader": "dlop"').replace("dlop", "auto"));
    assert.notEqual(await readFile(manifest, "utf8"), text);
    await assert.rejects(
      openBundle(dir, { trustedKeys: [keys.publicKeyPath] }),
      code("EBUNDLE_SIGNATURE", /does not verify/),
    );
  });

  it("refuses a patch.so changed by one byte with EBUNDLE_HASH, signed or not", async () => {
    for (const source of [signed, unsigned]) {
      const dir = await copy(source);
      await flipByte(path.join(dir, "patch.so"), 200);
      const opts = source === signed ? { trustedKeys: [keys.publicKeyPath] } : {};
      await assert.rejects(openBundle(dir, opts), code("EBUNDLE_HASH", /sha256/));
    }
  });

  it("refuses a truncated patch.so with EBUNDLE_HASH", async () => {
    const dir = await copy(unsigned);
    const so = path.join(dir, "patch.so");
    await writeFile(so, (await readFile(so)).subarray(0, 1000));
    await assert.rejects(openBundle(dir), code("EBUNDLE_HASH"));
  });

  it("refuses an unsigned bundle when keys are trusted or a signature is required: EBUNDLE_UNSIGNED", async () => {
    await assert.rejects(openBundle(unsigned, { trustedKeys: [keys.publicKeyPath] }), code("EBUNDLE_UNSIGNED"));
    await assert.rejects(openBundle(unsigned, { requireSignature: true }), code("EBUNDLE_UNSIGNED"));
  });

  it("opens a signed bundle without keys but does not call it verified", async () => {
    const bundle = await openBundle(signed);
    await bundle.dispose();
    assert.equal(bundle.signature, null);
    assert.equal(bundle.signedBy, keys.keyId);
  });

  it("refuses a malformed manifest.sig with EBUNDLE_SIGNATURE", async () => {
    const dir = await copy(signed);
    await writeFile(path.join(dir, "manifest.sig"), '{"schema":1,"alg":"rsa","keyId":"x","signature":"y"}');
    await assert.rejects(openBundle(dir, { trustedKeys: [keys.publicKeyPath] }), code("EBUNDLE_SIGNATURE", /alg/));
  });

  it("refuses a key file that is not an ed25519 public key with EBAD_KEY", async () => {
    const junk = path.join(tmp, "junk.pub");
    await writeFile(junk, "not a key");
    await assert.rejects(openBundle(signed, { trustedKeys: [junk] }), code("EBAD_KEY"));
    await assert.rejects(openBundle(signed, { trustedKeys: [path.join(tmp, "missing.pub")] }), code("EBAD_KEY"));
  });

  it("refuses missing files with EBAD_BUNDLE naming the file", async () => {
    for (const name of ["manifest.json", "patch.so"]) {
      const dir = await copy(unsigned);
      await unlink(path.join(dir, name));
      await assert.rejects(openBundle(dir), code("EBAD_BUNDLE", new RegExp(`${name.replace(".", "\\.")} is missing`)));
    }
    await assert.rejects(openBundle(path.join(tmp, "nowhere")), code("EBAD_BUNDLE", /does not exist/));
  });

  it("refuses a patch.so that is a symbolic link with EBAD_BUNDLE", async () => {
    const dir = await copy(unsigned);
    const real = path.join(tmp, `elsewhere-${n}.so`);
    await cp(path.join(dir, "patch.so"), real);
    await unlink(path.join(dir, "patch.so"));
    await symlink(real, path.join(dir, "patch.so"));
    await assert.rejects(openBundle(dir), code("EBAD_BUNDLE", /regular file/));
  });

  it("refuses a patch.so that is not ELF even when its hash matches, with EBAD_BUNDLE", async () => {
    const dir = await copy(unsigned);
    const junk = Buffer.from("this is not an ELF file\n");
    await writeFile(path.join(dir, "patch.so"), junk);
    const manifestPath = path.join(dir, "manifest.json");
    const manifest = JSON.parse(await readFile(manifestPath, "utf8"));
    const { createHash } = await import("node:crypto");
    manifest.sha256 = createHash("sha256").update(junk).digest("hex");
    await writeFile(manifestPath, JSON.stringify(manifest));
    await assert.rejects(openBundle(dir), code("EBAD_BUNDLE", /not a valid ELF/));
  });

  it("refuses a manifest whose replacement patch.so does not export, with EBAD_BUNDLE", async () => {
    const dir = await copy(unsigned);
    const manifestPath = path.join(dir, "manifest.json");
    const manifest = JSON.parse(await readFile(manifestPath, "utf8"));
    manifest.functions[0].replacement = "not_there";
    await writeFile(manifestPath, JSON.stringify(manifest));
    await assert.rejects(openBundle(dir), code("EBAD_BUNDLE", /functions\[0\]\.replacement/));
  });

  it("works on a private copy: changing the original after opening does not change what is used", async () => {
    const dir = await copy(unsigned);
    const bundle = await openBundle(dir);
    try {
      const before = await readFile(bundle.soPath);
      await flipByte(path.join(dir, "patch.so"), 200);
      assert.deepEqual(await readFile(bundle.soPath), before);
      assert.equal((await stat(bundle.soPath)).mode & 0o777, 0o644);
    } finally {
      await bundle.dispose();
    }
  });

  it("packs a signed bundle into a tar that verifies the same way", async () => {
    const tarPath = path.join(tmp, "signed.tar");
    await packBundle(signed, tarPath);
    const bundle = await openBundle(tarPath, { trustedKeys: [keys.publicKeyPath] });
    await bundle.dispose();
    assert.equal(bundle.signature?.keyId, keys.keyId);
    const again = path.join(tmp, "signed-again.tar");
    await packBundle(signed, again);
    assert.deepEqual(await readFile(again), await readFile(tarPath), "packing is reproducible");
  });

  describe("hostile tar files", () => {
    let staging: string;
    before(async () => {
      staging = path.join(tmp, "staging");
      await cp(unsigned, staging, { recursive: true });
    });

    async function tarOf(name: string, args: string[]): Promise<string> {
      const tarPath = path.join(tmp, `${name}.tar`);
      await runTool("tar", ["-cf", tarPath, ...args]);
      return tarPath;
    }

    it("refuses an entry with .. in its path", async () => {
      const t = await tarOf("dotdot", [
        "-C",
        staging,
        "--transform",
        "s,^patch.so,../patch.so,",
        "manifest.json",
        "patch.so",
      ]);
      await assert.rejects(openBundle(t), code("EBAD_BUNDLE", /unexpected entry "\.\.\/patch\.so"/));
    });

    it("refuses an absolute path", async () => {
      const t = await tarOf("absolute", [
        "-P",
        "-C",
        staging,
        "--transform",
        "s,^patch.so,/tmp/patch.so,",
        "manifest.json",
        "patch.so",
      ]);
      await assert.rejects(openBundle(t), code("EBAD_BUNDLE", /unexpected entry/));
    });

    it("refuses a symbolic link entry", async () => {
      const linkDir = path.join(tmp, "with-link");
      await mkdir(linkDir);
      await cp(path.join(staging, "manifest.json"), path.join(linkDir, "manifest.json"));
      await symlink("/etc/passwd", path.join(linkDir, "patch.so"));
      const t = await tarOf("link", ["-C", linkDir, "manifest.json", "patch.so"]);
      await assert.rejects(openBundle(t), code("EBAD_BUNDLE", /SymbolicLink/));
    });

    it("refuses extra files and duplicate entries", async () => {
      await writeFile(path.join(staging, "run.sh"), "#!/bin/sh\n");
      const extra = await tarOf("extra", ["-C", staging, "manifest.json", "patch.so", "run.sh"]);
      await assert.rejects(openBundle(extra), code("EBAD_BUNDLE", /unexpected entry "run\.sh"/));
      const dup = await tarOf("dup", ["--hard-dereference", "-C", staging, "manifest.json", "patch.so", "patch.so"]);
      await assert.rejects(openBundle(dup), code("EBAD_BUNDLE", /appears twice/));
      // Without --hard-dereference GNU tar stores the second copy as a hard link: refused too.
      const hard = await tarOf("hardlink", ["-C", staging, "manifest.json", "patch.so", "patch.so"]);
      await assert.rejects(openBundle(hard), code("EBAD_BUNDLE", /patch\.so is a Link/));
    });

    it("refuses a file that is not a tar, and a truncated tar", async () => {
      const junk = path.join(tmp, "junk.tar");
      await writeFile(junk, "definitely not a tar archive".repeat(40));
      await assert.rejects(openBundle(junk), code("EBAD_BUNDLE"));
      const good = await tarOf("good", ["-C", staging, "manifest.json", "patch.so"]);
      const cut = path.join(tmp, "cut.tar");
      await writeFile(cut, (await readFile(good)).subarray(0, 3000));
      await assert.rejects(openBundle(cut), code("EBAD_BUNDLE"));
    });

    it("refuses an oversized manifest entry before reading it", async () => {
      const big = path.join(tmp, "big");
      await mkdir(big);
      await writeFile(path.join(big, "manifest.json"), Buffer.alloc(65 * 1024, 0x20));
      await cp(path.join(staging, "patch.so"), path.join(big, "patch.so"));
      const t = await tarOf("big", ["-C", big, "manifest.json", "patch.so"]);
      await assert.rejects(openBundle(t), code("EBAD_BUNDLE", /manifest\.json is \d+ bytes, more than/));
    });
  });

  it("inspectBundle reports a tampered patch.so and an untrusted signer instead of throwing", async () => {
    const dir = await copy(signed);
    await flipByte(path.join(dir, "patch.so"), 200);
    const report = await inspectBundle(dir, { trustedKeys: [otherKeys.publicKeyPath] });
    assert.equal(report.ok, false);
    assert.equal(report.hash.ok, false);
    assert.equal(report.signature.state, "invalid");
    const clean = await inspectBundle(signed, { trustedKeys: [keys.publicKeyPath] });
    assert.equal(clean.ok, true);
    assert.deepEqual(clean.signature, { state: "verified", keyId: keys.keyId });
  });

  it("an aborted signal stops openBundle with ECANCELLED", async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(openBundle(unsigned, { signal: ac.signal }), code("ECANCELLED"));
  });

  it("generateKeyPair makes distinct ed25519 keys", async () => {
    const a = await generateKeyPair();
    const b = await generateKeyPair();
    assert.notEqual(a.keyId, b.keyId);
    assert.match(a.publicKey, /BEGIN PUBLIC KEY/);
    assert.match(a.privateKey, /BEGIN PRIVATE KEY/);
  });
});
