/**
 * Strict consistency (the default) judged exactly: every thread of a real target is unwound from
 * its CFI, so stale return addresses left in a stack do not count, while a thread really inside a
 * function (or in its compiler-split .cold part, or deep in a recursion of it) does. A function that
 * is always on the stack is switched when it returns, through a landing pad on its return address,
 * and a SIGKILL of the process running the engine while it waits leaves the target running
 * correctly. Everything is read from the targets' own output and /proc.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { activatePatch, applyPatch, EngineError, listPatches, revertPatch } from "../../native/index.js";
import { waitFor } from "../helpers/agent_harness.js";
import { compileFixture, type RunningFixture, runTool, startFixture } from "../helpers/fixtures.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let binary: string;
let patch: string;
let dir: string;

before(async () => {
  binary = await compileFixture("c/strict_shapes.c", ["-O2", "-g", "-pthread"]);
  patch = await compileFixture("c/strict_shapes_patch.c", ["-O2", "-shared", "-fPIC"]);
  dir = await mkdtemp(path.join(tmpdir(), "hotpatch-strict-"));
});
after(async () => rm(dir, { recursive: true, force: true }));

const spec = (id: string, fns: [string, string][]) => ({
  id,
  soPath: patch,
  functions: fns.map(([symbol, replacement]) => ({ symbol, replacement })),
});

const isUnsafe = (pattern: RegExp) => (err: unknown) =>
  err instanceof EngineError && err.code === "EUNSAFE_TIMEOUT" && pattern.test(err.message);

/** The state letter of the target's thread `tid`, and the thread tracing the target (0: none). */
async function traceState(pid: number, tid: number): Promise<{ state: string; tracer: number }> {
  const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8");
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return {
    state: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "",
    tracer: Number(/TracerPid:\s*(\d+)/.exec(status)?.[1] ?? 0),
  };
}

/**
 * Resolves once a thread of process `engine` traces the target while the target's thread `tid`
 * runs (in a stop it would be in state t): a wait for a return is armed.
 */
async function waitArmed(pid: number, tid: number, engine: number): Promise<void> {
  await waitFor(
    `process ${pid} traced by process ${engine} while it runs`,
    async () => {
      const s = await traceState(pid, tid);
      const ours = s.tracer !== 0 && existsSync(`/proc/${engine}/task/${s.tracer}`);
      return ours && (s.state === "S" || s.state === "R") ? true : undefined;
    },
    20_000,
    5,
  );
}

/** How many lines of the target's output so far match `re`. */
function count(target: RunningFixture, re: RegExp): number {
  return target
    .output()
    .split("\n")
    .filter((l) => re.test(l)).length;
}

async function waitForLines(target: RunningFixture, re: RegExp, n: number): Promise<void> {
  await waitFor(
    `${n} lines matching ${re} from process ${target.pid}`,
    () => (count(target, re) >= n ? true : undefined),
    20_000,
  );
}

async function workerTid(pid: number): Promise<number> {
  const tids = (await runTool("ls", [`/proc/${pid}/task`])).split(/\s+/).filter(Boolean).map(Number);
  const other = tids.find((t) => t !== pid);
  assert.ok(other !== undefined, `process ${pid} has a worker thread`);
  return other;
}

describe("strict consistency", () => {
  it("patches a function whose stale return addresses lie in idle stacks at the first or second stop", async () => {
    const target = await startFixture(binary, ["stale"]);
    try {
      assert.match(await target.nextLine(/^tariff /), /^tariff \d+ lag /);
      for (let round = 0; round < 5; round++) {
        const r = await applyPatch(target.pid, spec("stale", [["tariff", "tariff_v2"]]));
        assert.ok(r.attempts <= 2, `round ${round}: took ${r.attempts} stops`);
        await target.nextLine(/^tariff -7 /);
        await revertPatch(target.pid, "stale", { unload: true });
        await target.nextLine(/^tariff \d+ /);
      }
    } finally {
      await target.kill();
    }
  });

  it("switches a function that is always on the stack right after it returns, never under a running call", async () => {
    const target = await startFixture(binary, ["greet", "300"]);
    try {
      await target.nextLine(/^greet v1 /);
      const r = await applyPatch(target.pid, spec("greet", [["greet", "greet_v2"]]), { safetyTimeoutMs: 10_000 });
      assert.equal(r.patch.state, "active");
      await target.nextLine(/^greet v2 /);
      const lines = target.output().split("\n");
      const first = lines.findIndex((l) => l.startsWith("greet v2 "));
      const before = lines.slice(0, first).filter((l) => l.startsWith("greet "));
      // Every call of the old greet that began also finished: "v1" then "end", in pairs.
      assert.ok(before.length >= 2 && before.length % 2 === 0, before.join("|"));
      for (const [i, l] of before.entries()) assert.match(l, i % 2 === 0 ? /^greet v1 / : /^greet end /);
      await revertPatch(target.pid, "greet", { unload: true });
      await target.nextLine(/^greet end /);
    } finally {
      await target.kill();
    }
  });

  it("finishes a whole recursion in the old function before switching (the outermost frame's return)", async () => {
    const target = await startFixture(binary, ["recurse", "150"]);
    try {
      assert.equal(await target.nextLine(/^walk /), "walk 184");
      await applyPatch(target.pid, spec("walk", [["walk", "walk_v2"]]), { safetyTimeoutMs: 10_000 });
      await target.nextLine(/^walk -6$/);
      // A switch inside the recursion would have mixed old outer frames with the new function.
      for (const l of target
        .output()
        .split("\n")
        .filter((x) => x.startsWith("walk "))) {
        assert.ok(l === "walk 184" || l === "walk -6", l);
      }
    } finally {
      await target.kill();
    }
  });

  describe("a thread really inside the function", () => {
    let target: RunningFixture;
    let flag: string;

    before(async () => {
      flag = path.join(dir, "spin-flag");
      target = await startFixture(binary, ["spin", flag]);
      await target.nextLine(/^spin 1$/);
    });
    after(async () => target.kill());

    it("is refused after the deadline, naming the thread and its frames, and nothing changes", async () => {
      const tid = await workerTid(target.pid);
      await assert.rejects(
        applyPatch(
          target.pid,
          spec("spin", [
            ["spin", "spin_v2"],
            ["spin_result", "spin_result_v2"],
          ]),
          { safetyTimeoutMs: 500 },
        ),
        isUnsafe(new RegExp(`thread ${tid} of process ${target.pid} is executing in spin .*frames: spin\\+0x`)),
      );
      assert.deepEqual(await listPatches(target.pid), []);
      await target.nextLine(/^spin 1$/);
    });

    it("is switched once the thread has left it", async () => {
      await writeFile(flag, "");
      await applyPatch(
        target.pid,
        spec("spin", [
          ["spin", "spin_v2"],
          ["spin_result", "spin_result_v2"],
        ]),
      );
      await target.nextLine(/^spin 2$/);
    });
  });

  describe("a thread in the .cold part split off the function", () => {
    let target: RunningFixture;
    let flag: string;

    before(async () => {
      assert.match(await runTool("nm", [binary]), / t check\.cold\n/, "the compiler split check.cold off check");
      flag = path.join(dir, "cold-flag");
      target = await startFixture(binary, ["cold", flag]);
      await target.nextLine(/^check 6$/);
    });
    after(async () => target.kill());

    it("keeps the function busy: refused after the deadline, naming the split part", async () => {
      await assert.rejects(
        applyPatch(target.pid, spec("check", [["check", "check_v2"]]), { safetyTimeoutMs: 500 }),
        isUnsafe(/will return into check \(its split-off part check\.cold\)/),
      );
      await target.nextLine(/^check 6$/);
    });

    it("is switched when the thread returns out of the cold part", async () => {
      const applying = applyPatch(target.pid, spec("check", [["check", "check_v2"]]), { safetyTimeoutMs: 20_000 });
      await waitArmed(target.pid, await workerTid(target.pid), process.pid);
      await writeFile(flag, "");
      assert.equal((await applying).patch.state, "active");
      await target.nextLine(/^check 1005$/);
    });
  });

  it("leaves the target running correctly when the engine's process is killed while it waits for a return", async () => {
    const target = await startFixture(binary, ["greet", "1500"]);
    const script = `
      const { applyPatch } = await import(${JSON.stringify(path.join(root, "native/index.ts"))});
      await applyPatch(${target.pid}, ${JSON.stringify(spec("greet", [["greet", "greet_v2"]]))}, { safetyTimeoutMs: 60000 });
      console.log("applied");`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    try {
      await waitArmed(target.pid, target.pid, child.pid as number);
      child.kill("SIGKILL");
      await exited;
      // The landing pad ran without a tracer: greet returned where it should, and runs on.
      const ends = count(target, /^greet end /);
      await waitForLines(target, /^greet end /, ends + 2);
      assert.ok(target.alive(), "the target still runs");
      assert.equal((await traceState(target.pid, target.pid)).tracer, 0);
      assert.equal(count(target, /^greet v2 /), 0);
      // The patch the dead engine loaded is still there, inactive, and a later call switches it.
      assert.equal((await listPatches(target.pid))[0]?.state, "loaded");
      await activatePatch(target.pid, "greet", { safetyTimeoutMs: 10_000 });
      await waitForLines(target, /^greet v2 /, 2);
      assert.ok(target.alive());
    } finally {
      child.kill("SIGKILL");
      await target.kill();
    }
  });
});
