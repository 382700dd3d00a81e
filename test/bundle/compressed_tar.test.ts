/**
 * Compressed .tar bundles: gzip is inflated by the bundle reader itself, at most MAX_TAR_BYTES,
 * before anything in the bundle is believed. A real gzip bomb built here (856:1, below node-tar's
 * own 1000:1 ratio cap, 64 MiB inflating to about 54 GiB) is stopped at the cap with EBAD_BUNDLE
 * after reading a small part of the file (the kernel's count of bytes this process read says how
 * much); nested and zstd compression are refused; damaged gzip settles as a BundleError.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { BundleError, MAX_TAR_BYTES, openBundle } from "../../bundle/index.js";
import { makeBundle } from "../helpers/agent_harness.js";
import { compileFixture } from "../helpers/fixtures.js";

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A ustar header of a regular file (checksum included), as node-tar's parser expects it. */
function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  const field = (at: number, len: number, text: string) => h.write(text, at, len, "ascii");
  const octal = (at: number, len: number, n: number) => field(at, len, `${n.toString(8).padStart(len - 1, "0")}\0`);
  field(0, 100, name);
  octal(100, 8, 0o644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 0);
  field(156, 1, "0");
  field(257, 6, "ustar\0");
  field(263, 2, "00");
  field(148, 8, "        ");
  let sum = 0;
  for (const b of h) sum += b;
  field(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/** Bytes this process has read through read(2) and friends, by the kernel's count. */
async function bytesRead(): Promise<number> {
  const io = await readFile("/proc/self/io", "utf8");
  return Number(/^rchar: (\d+)$/m.exec(io)?.[1]);
}

const MiB = 1024 * 1024;

describe("compressed tar bundles", () => {
  let tmp: string;
  let plain: Buffer;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-gz-"));
    const patchSo = await compileFixture("c/compute_patch.c", ["-O1", "-shared", "-fPIC"]);
    // makeBundle leaves the archive at <tmp>/good.tar.
    plain = await makeBundle(tmp, "good", { buildId: "00ff00ff" }, patchSo);
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("opens a gzip-compressed bundle like the plain one", async () => {
    const file = path.join(tmp, "good.tar.gz");
    await writeFile(file, gzipSync(plain));
    const [a, b] = [await openBundle(path.join(tmp, "good.tar")), await openBundle(file)];
    try {
      assert.deepEqual(b.manifest, a.manifest);
      assert.deepEqual(await readFile(b.soPath), await readFile(a.soPath));
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });

  it("stops a 64 MiB gzip bomb at 856:1 at the cap, having read a small part of it", { timeout: 300_000 }, async () => {
    // A patch.so of 64 MiB of zeros, then more zeros: concatenated gzip members of 1 MiB each, with
    // enough random bytes in each to bring the ratio to 856:1.
    const zeros = gzipSync(Buffer.alloc(MiB), { level: 9 }).length;
    const noise = Math.max(0, Math.round(MiB / 856) - zeros - 16);
    const member = (prefix: Buffer) =>
      gzipSync(Buffer.concat([prefix, randomBytes(noise), Buffer.alloc(MiB - prefix.length - noise)]), { level: 9 });
    const first = member(tarHeader("patch.so", 64 * MiB));
    const next = member(Buffer.alloc(0));
    const count = Math.floor((64 * MiB - first.length) / next.length);
    const file = path.join(tmp, "bomb.tar");
    const out = await open(file, "w");
    await out.write(first);
    const batch = Buffer.concat(Array.from({ length: 1024 }, () => next));
    for (let left = count; left > 0; left -= 1024)
      await out.write(left >= 1024 ? batch : batch.subarray(0, left * next.length));
    await out.close();
    const size = first.length + count * next.length;
    const ratio = ((count + 1) * MiB) / size;
    assert.ok(size <= 64 * MiB && ratio > 800 && ratio < 1000, `bomb: ${size} bytes at ${ratio.toFixed(0)}:1`);

    const readBefore = await bytesRead();
    const rssBefore = process.resourceUsage().maxRSS;
    await assert.rejects(
      openBundle(file),
      (err: unknown) =>
        err instanceof BundleError &&
        err.code === "EBAD_BUNDLE" &&
        err.message.includes(`inflates to more than the ${MAX_TAR_BYTES} bytes`),
    );
    const read = (await bytesRead()) - readBefore;
    // The cap is reached after MAX_TAR_BYTES / 856 (about 80 KiB) of the file, plus what the streams read ahead.
    assert.ok(read < 8 * MiB, `read ${read} of the bomb's ${size} bytes`);
    const rssGrowthKiB = process.resourceUsage().maxRSS - rssBefore;
    assert.ok(rssGrowthKiB < 512 * 1024, `peak RSS grew by ${rssGrowthKiB} KiB`);
  });

  it("refuses a compressed tar inside a compressed tar, and zstd", async () => {
    const nested = path.join(tmp, "nested.tar");
    await writeFile(nested, gzipSync(gzipSync(plain)));
    await assert.rejects(
      openBundle(nested),
      (err: unknown) =>
        err instanceof BundleError && err.code === "EBAD_BUNDLE" && /inside a compressed/.test(err.message),
    );
    const zstd = path.join(tmp, "bundle.tar.zst");
    await writeFile(zstd, Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(2048)]));
    await assert.rejects(
      openBundle(zstd),
      (err: unknown) => err instanceof BundleError && err.code === "EBAD_BUNDLE" && /zstd/.test(err.message),
    );
  });

  it("settles every damaged gzip bundle with a verified bundle or a BundleError", async () => {
    const good = gzipSync(plain);
    const rand = prng(0x9e1);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    const file = path.join(tmp, "case.tar.gz");
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 150; i++) {
      let bytes = Buffer.from(good);
      if (i % 2 === 0) for (let k = int(1, 4); k > 0; k--) bytes[int(0, bytes.length - 1)] = int(0, 255);
      else bytes = bytes.subarray(0, int(0, bytes.length - 1));
      await writeFile(file, bytes);
      try {
        const bundle = await openBundle(file);
        await bundle.dispose();
        outcomes.set("opened", (outcomes.get("opened") ?? 0) + 1);
      } catch (err) {
        assert.ok(err instanceof BundleError, `case ${i}: threw ${String(err)}`);
        outcomes.set(err.code, (outcomes.get(err.code) ?? 0) + 1);
      }
    }
    assert.ok((outcomes.get("EBAD_BUNDLE") ?? 0) > 50, `outcomes: ${JSON.stringify([...outcomes])}`);
  });
});
