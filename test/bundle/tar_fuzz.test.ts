/**
 * The tar reader against damaged archives (seeded): bytes of a real bundle .tar flipped in headers
 * and bodies, cut short, or padded with junk. openBundle must settle every time, with a bundle
 * whose hash still verifies or a BundleError, never another exception and never a hang.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { BundleError, buildBundle, openBundle } from "../../bundle/index.js";
import { compileFixture, fixtureSource } from "../helpers/fixtures.js";

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

describe("tar bundle fuzzing", () => {
  let tmp: string;
  let good: Buffer;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-tar-fuzz-"));
    const target = await compileFixture("c/counter.c", ["-O1", "-fPIE", "-pie"]);
    const tarPath = path.join(tmp, "good.tar");
    await buildBundle({
      target,
      source: fixtureSource("bundle/fix_scale.c"),
      functions: ["counter.c:scale=scale_v2"],
      out: tarPath,
      tar: true,
    });
    good = await readFile(tarPath);
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("settles every damaged archive with a verified bundle or a BundleError", async () => {
    const rand = prng(0x7a4);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    const file = path.join(tmp, "case.tar");
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      let bytes = Buffer.from(good);
      const kind = i % 3;
      if (kind === 0) {
        // Flip bytes: half in the first header block, where the parser decides the most, half anywhere.
        for (let k = int(1, 6); k > 0; k--) bytes[rand() < 0.5 ? int(0, 511) : int(0, bytes.length - 1)] = int(0, 255);
      } else if (kind === 1) {
        bytes = bytes.subarray(0, int(0, bytes.length - 1));
      } else {
        const junk = Buffer.alloc(int(1, 4096));
        for (let j = 0; j < junk.length; j++) junk[j] = int(0, 255);
        const at = int(0, bytes.length);
        bytes = Buffer.concat([bytes.subarray(0, at), junk, bytes.subarray(at)]);
      }
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
