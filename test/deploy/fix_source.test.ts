/** The patch source of the demo: builds as a shared object that exports the replacement functions. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { correctPrice, DEMO_FIX_SOURCE, sendLine, startDemoService } from "../../deploy/demo/index.js";
import { buildLinkedFix, buildV1 } from "./demo_helpers.js";

const execFileAsync = promisify(execFile);

describe("demo fix source", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "hotpatch-fix-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("compiles with gcc -shared -fPIC and exports compute_price and service_version", async () => {
    const so = path.join(dir, "patch.so");
    await execFileAsync("gcc", [
      "-shared",
      "-fPIC",
      "-g",
      "-O2",
      "-Wall",
      "-Wextra",
      "-Werror",
      "-o",
      so,
      DEMO_FIX_SOURCE,
    ]);
    const { stdout } = await execFileAsync("nm", ["-D", "--defined-only", so]);
    assert.match(stdout, / T compute_price$/m);
    assert.match(stdout, / T service_version$/m);
  });

  it("replaces functions the service really has, under the same names", async () => {
    const service = await buildV1(dir);
    const { stdout } = await execFileAsync("nm", [service]);
    for (const name of ["compute_price", "service_version"]) assert.match(stdout, new RegExp(` T ${name}$`, "m"));
  });

  it("makes the service answer v2 with the correct price when its functions are the fix's", async () => {
    const fixed = await buildLinkedFix(dir);
    const s = await startDemoService({ binary: fixed });
    try {
      for (const n of [0, 1, 7, 999, 1_000_000]) {
        const r = await sendLine(s.endpoint, `QUOTE ${n}`, { timeoutMs: 2000 });
        assert.deepEqual(r, { kind: "answer", line: `v2 ${correctPrice(n)}` });
      }
      assert.deepEqual(await sendLine(s.endpoint, "HEALTH", { timeoutMs: 2000 }), {
        kind: "answer",
        line: "OK active v2",
      });
    } finally {
      await s.kill();
    }
  });
});
