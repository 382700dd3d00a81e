/**
 * `hotpatch demo` (what `npm run demo` runs after its set-up step), end to end: the rollout goes through both pairs with no
 * failed request and only right answers afterwards, the switchover drill runs, and Ctrl-C leaves
 * no process behind.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const hotpatchBin = path.join(root, "bin/hotpatch.js");

/**
 * Processes still carrying this run's tag in their environment (every process the demo starts
 * inherits it), so that a demo run elsewhere on the machine is not counted.
 */
function leftoversNow(tag: string): string {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`).includes(tag))
        found.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`).toString().replaceAll("\0", " ")}`);
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return found.join("\n");
}

/** Processes of the demo still alive after a grace period (a killed command's compiler may take a moment). */
async function leftovers(tag: string): Promise<string> {
  for (let i = 0; i < 150 && leftoversNow(tag) !== ""; i++) await new Promise((r) => setTimeout(r, 100));
  return leftoversNow(tag);
}

/** Starts `hotpatch demo ARGS` with a tag of its own in the environment. */
function startDemo(args: string[]): { child: ChildProcess; stdout: Readable; tag: string } {
  const tag = `HOTPATCH_DEMO_TEST_RUN=${randomUUID()}`;
  const [key, value] = tag.split("=") as [string, string];
  const child = spawn(process.execPath, [hotpatchBin, "demo", ...args], {
    cwd: root,
    env: { ...process.env, [key]: value },
    stdio: ["ignore", "pipe", args.includes("--json") ? "inherit" : "pipe"],
  });
  return { child, stdout: child.stdout as Readable, tag };
}

it("rolls the fix through both pairs with zero failed requests, drills a switchover, cleans up", {
  timeout: 600_000,
}, async () => {
  const { child, stdout, tag } = startDemo(["--json"]);
  let out = "";
  stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  const summary = JSON.parse(out.trim().split("\n").pop() ?? "{}") as {
    rolloutExit: number;
    failedRequests: number;
    wrongAnswersAfterRollout: number;
    pairs: { pair: string; byVersion: Record<string, { correct: number; wrong: number }> }[];
    drill: { newActive: string; oldActive: string; detectionMs: number; takeoverMs: number } | null;
    seconds: number;
    mode: string;
    cluster: string | null;
  };
  assert.equal(code, 0, out.slice(-3000));
  // Hardened by default: mTLS gRPC with roles, NATS with credentials; cluster status reads as the controller.
  assert.equal(summary.mode, "hardened");
  assert.ok(summary.cluster, "cluster status ran with the controller's NATS identity");
  assert.equal(summary.rolloutExit, 0);
  assert.equal(summary.failedRequests, 0);
  assert.equal(summary.wrongAnswersAfterRollout, 0);
  for (const p of summary.pairs) {
    assert.ok((p.byVersion.v1?.wrong ?? 0) > 0, `${p.pair} answered wrong (v1) before the fix`);
    assert.ok((p.byVersion.v2?.correct ?? 0) > 0, `${p.pair} answered right (v2) after it`);
    assert.equal(p.byVersion.v2?.wrong ?? 0, 0);
  }
  assert.ok(summary.drill);
  assert.notEqual(summary.drill.newActive, summary.drill.oldActive);
  assert.equal(await leftovers(tag), "", "every process the demo started is gone");
});

it("Ctrl-C stops everything the demo started (in lab mode)", { timeout: 300_000 }, async () => {
  const { child, stdout, tag } = startDemo(["--lab"]);
  let out = "";
  stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  // Interrupt once the pairs are up and load is running.
  await new Promise<void>((resolve) => {
    const check = () => {
      if (out.includes("load: each pair")) resolve();
      else setTimeout(check, 100);
    };
    check();
  });
  assert.match(out, /lab mode: NATS open on loopback, gRPC without TLS/);
  assert.notEqual(leftoversNow(tag), "", "the tag finds the demo's processes while it runs");
  child.kill("SIGINT");
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  assert.equal(code, 130);
  assert.equal(await leftovers(tag), "", "no process of the demo is left");
});
