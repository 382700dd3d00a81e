/**
 * A patch that calls an IFUNC (libc's strlen, strstr) binds to the implementation the target's
 * ld.so chose, which GLIBC_TUNABLES can make differ from what this process chose on the same CPU.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { applyPatch, EngineError, readMaps, revertPatch } from "../../native/index.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";

/** Turns off AVX2, so ld.so falls back to the SSE2 string functions. */
const tunables = { GLIBC_TUNABLES: "glibc.cpu.hwcaps=-AVX2" };

interface Chosen {
  strlen: bigint;
  strstr: bigint;
  /** Where libc's first mapping starts. */
  libc: bigint;
}

async function chosen(t: RunningFixture): Promise<Chosen> {
  const m = /^chosen strlen=(0x[0-9a-f]+) strstr=(0x[0-9a-f]+)$/m.exec(t.output());
  assert.ok(m, "the fixture printed what it chose");
  const libc = (await readMaps(t.pid)).filter((x) => /\/libc\.so\.6$/.test(x.path)).map((x) => x.start);
  assert.ok(libc.length > 0);
  return {
    strlen: BigInt(m[1] ?? ""),
    strstr: BigInt(m[2] ?? ""),
    libc: libc.sort((a, b) => (a < b ? -1 : 1))[0] ?? 0n,
  };
}

async function probe(t: RunningFixture): Promise<bigint> {
  await t.nextLine(/^probe=/); // may predate the last operation
  return BigInt((await t.nextLine(/^probe=/)).slice("probe=".length));
}

let binary: string;
let strlenPatch: string;
let strstrPatch: string;
before(async () => {
  binary = await compileFixture("c/ifunc_target.c", ["-O2", "-fPIE", "-pie"]);
  strlenPatch = await compileFixture("c/ifunc_patch.c", ["-O2", "-shared", "-fPIC"]);
  strstrPatch = await compileFixture("c/ifunc_patch.c", ["-O2", "-shared", "-fPIC", "-DUSE_STRSTR"]);
});

describe("a target started with GLIBC_TUNABLES that change ld.so's IFUNC choices", () => {
  let tuned: RunningFixture;
  let plain: RunningFixture;
  before(async () => {
    tuned = await startFixture(binary, [], 10_000, tunables);
    plain = await startFixture(binary);
  });
  after(async () => {
    await tuned?.kill();
    await plain?.kill();
  });

  it("a patch calling strlen gets the implementation the target uses, read from its GOT", async () => {
    const c = await chosen(tuned);
    await applyPatch(tuned.pid, {
      id: "len",
      soPath: strlenPatch,
      functions: [{ symbol: "probe", replacement: "probe_v2" }],
    });
    assert.equal(await probe(tuned), c.strlen);
    await revertPatch(tuned.pid, "len", { unload: true });
    assert.equal(await probe(tuned), 0n);
  });

  it("an IFUNC the target has bound nowhere is refused, since its choices differ from ours", async (t) => {
    const c = await chosen(tuned);
    const p = await chosen(plain);
    if (c.strlen - c.libc === p.strlen - p.libc) {
      t.skip("this CPU has no AVX2: the tunable changes nothing here");
      return;
    }
    await assert.rejects(
      applyPatch(tuned.pid, {
        id: "str",
        soPath: strstrPatch,
        functions: [{ symbol: "probe", replacement: "probe_v2" }],
      }),
      (err: unknown) => err instanceof EngineError && err.code === "EUNSUPPORTED_PATCH" && /strstr/.test(err.message),
    );
    assert.equal(await probe(tuned), 0n, "the target is left as it was");
  });
});

describe("a target that chose as this process did", () => {
  let plain: RunningFixture;
  before(async () => {
    plain = await startFixture(binary);
  });
  after(async () => plain?.kill());

  it("an IFUNC it has bound nowhere resolves through our own copy of the same libc build", async () => {
    const c = await chosen(plain);
    await applyPatch(plain.pid, {
      id: "str",
      soPath: strstrPatch,
      functions: [{ symbol: "probe", replacement: "probe_v2" }],
    });
    assert.equal(await probe(plain), c.strstr);
  });
});
