/**
 * End to end: `hotpatch rollout` against real agents (`hotpatch agent`, the native engine) patching
 * real target processes, over a real nats-server. Order is read from the agents' audit logs, the
 * effect from the targets' own output.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { RolloutStore } from "../../../controller/rollout/index.js";
import { readElf } from "../../../native/index.js";
import { makeBundle, tempDir } from "../../helpers/agent_harness.js";
import { hotpatch, hotpatchBin, jsonLines } from "../../helpers/cli.js";
import { compileFixture } from "../../helpers/fixtures.js";
import { until } from "../../helpers/heartbeats.js";
import { type NatsServer, startNatsServer } from "../../helpers/nats_server.js";
import { type RealNode, startRealNode } from "./real_cluster.js";

interface RunningCli {
  child: ChildProcess;
  events: () => Record<string, unknown>[];
  exit: Promise<number | null>;
  stderr: () => string;
}

function startCli(args: string[]): RunningCli {
  const child = spawn(process.execPath, [hotpatchBin, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  return {
    child,
    exit,
    stderr: () => err,
    events: () => jsonLines(out.split("\n").slice(0, -1).join("\n")),
  };
}

describe("rollout against real agents", { timeout: 300_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let nc: NatsConnection;
  let target: string;
  let goodBundle: string;
  let badBundle: string;
  let nodes: RealNode[] = [];
  let cluster = "";
  let n = 0;

  before(async () => {
    tmp = await tempDir("hotpatch-e2e-");
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    target = await compileFixture("c/patch_target.c", ["-O2", "-g", "-fPIE", "-pie", "-pthread"]);
    const buildId = (await readElf(target)).buildId ?? "";
    const good = await compileFixture("c/patch_compute.c", ["-O2", "-shared", "-fPIC"]);
    const bad = await compileFixture("c/patch_compute_crash.c", ["-O2", "-shared", "-fPIC"]);
    const fns = [{ symbol: "compute", replacement: "compute_v2" }];
    await makeBundle(tmp.dir, "fix-good", { path: target, buildId }, good, fns);
    await makeBundle(tmp.dir, "fix-bad", { path: target, buildId }, bad, fns);
    goodBundle = path.join(tmp.dir, "fix-good.tar");
    badBundle = path.join(tmp.dir, "fix-bad.tar");
  });
  after(async () => {
    for (const x of nodes) await x.stop();
    await nc?.close();
    await nats?.close();
    await tmp?.cleanup();
  });
  afterEach(async () => {
    for (const x of nodes) await x.stop();
    nodes = [];
  });

  /** Two pairs: p1 (a active, b standby), p2 (a standby, b active). */
  async function startCluster(): Promise<void> {
    cluster = `e2e${++n}`;
    for (const [pair, node, role] of [
      ["p1", "p1-a", "active"],
      ["p1", "p1-b", "standby"],
      ["p2", "p2-a", "standby"],
      ["p2", "p2-b", "active"],
    ] as const) {
      nodes.push(await startRealNode({ dir: tmp.dir, cluster, pair, node, role, natsUrl: nats.url, target }));
    }
  }

  async function writePlan(bundle: string, extra = ""): Promise<string> {
    const file = path.join(tmp.dir, `${cluster}.yaml`);
    const addresses = nodes.map((x) => `${x.node}: "127.0.0.1:${x.grpcPort}"`).join(", ");
    await writeFile(
      file,
      `cluster: ${cluster}
nats: {servers: ["${nats.url}"]}
bundle: ${bundle}
target: {exePath: ${target}}
canary: {pairs: [p1], soak: 1s}
waves: {size: 1, maxParallel: 1, soak: 500ms}
progressDeadline: 60s
discovery: 1s
gates: {heartbeatGap: {intervals: 10}}
agents: {insecure: true, callTimeout: 20s, nodes: {${addresses}}}
${extra}`,
    );
    return file;
  }

  const node = (name: string) => nodes.find((x) => x.node === name) as RealNode;
  const applyTimes = async (name: string) =>
    (await node(name).audit()).filter((r) => r.action === "apply" && r.result === "ok").map((r) => Date.parse(r.time));

  it("a good patch rolls through both pairs, standby before active, and the targets run the new code", async () => {
    await startCluster();
    const plan = await writePlan(goodBundle);
    const r = await hotpatch(["rollout", "--plan", plan, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const events = jsonLines(r.stdout);
    assert.equal(events.at(-1)?.type, "rollout.done");
    // Order, from the agents' own audit logs: p1 canary before p2; standby before active in each.
    const [p1b] = await applyTimes("p1-b");
    const [p1a] = await applyTimes("p1-a");
    const [p2a] = await applyTimes("p2-a");
    const [p2b] = await applyTimes("p2-b");
    assert.ok(p1b && p1a && p2a && p2b, "every node was patched");
    assert.ok(p1b < p1a && p1a < p2a && p2a < p2b, JSON.stringify({ p1b, p1a, p2a, p2b }));
    // The targets answer with the new compute().
    for (const x of nodes) {
      await until(
        () => /tally old=\d+ new=[1-9]/.test(x.output().split("\n").slice(-5).join("\n")),
        5000,
        `${x.node} new code`,
      );
    }
  });

  it("a patch that breaks the service on the standby stops before any active node is touched, and is rolled back", async () => {
    await startCluster();
    const plan = await writePlan(badBundle);
    await writeFile(plan, (await readFile(plan, "utf8")).replace("soak: 1s", "soak: 3s"));
    const r = await hotpatch(["rollout", "--plan", plan, "--json"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /pair p1 node p1-b gate (noRestart|probes|patchActive|heartbeatGap|apply) failed/);
    assert.deepEqual(
      await applyTimes("p1-a"),
      [],
      r.stdout
        .split("\n")
        .filter((l) => !l.includes("soak.progress") || l.includes("false"))
        .join("\n"),
    );
    assert.deepEqual(await applyTimes("p2-a"), []);
    assert.deepEqual(await applyTimes("p2-b"), []);
    const reverts = (await node("p1-b").audit()).filter((x) => x.action === "revert");
    assert.equal(reverts.length, 1);
  });

  it("a heartbeat that stops mid-soak fails the gate; the rollout is rolled back and exits 1", async () => {
    await startCluster();
    const plan = await writePlan(goodBundle, "");
    const file = plan.replace(".yaml", "-long.yaml");
    await writeFile(file, (await readFile(plan, "utf8")).replace("soak: 1s", "soak: 20s"));
    const cli = startCli(["rollout", "--plan", file, "--json"]);
    await until(() => cli.events().some((e) => e.type === "step.started" && e.step === "soak"), 30_000, "soak");
    node("p1-b").freeze();
    await until(() => cli.events().some((e) => e.type === "pair.failed"), 10_000, "gate failure");
    node("p1-b").thaw();
    assert.equal(await cli.exit, 1);
    const failed = cli.events().find((e) => e.type === "pair.failed") as { failure: { node: string; gate: string } };
    assert.deepEqual([failed.failure.node, failed.failure.gate], ["p1-b", "heartbeatGap"]);
    assert.deepEqual(await applyTimes("p1-a"), []);
    assert.equal((await node("p1-b").audit()).filter((x) => x.action === "revert").length, 1);
  });

  it("a controller killed mid-soak resumes to the same end state without repeating a step; a second controller is refused meanwhile", async () => {
    await startCluster();
    const plan = await writePlan(goodBundle);
    const file = plan.replace(".yaml", "-kill.yaml");
    await writeFile(file, (await readFile(plan, "utf8")).replace("soak: 1s", "soak: 5s"));
    const cli = startCli(["rollout", "--plan", file, "--json", "--id", `kill-${cluster}`]);
    await until(() => cli.events().some((e) => e.type === "step.started" && e.step === "soak"), 30_000, "soak");
    const second = await hotpatch(["rollout", "--plan", file]);
    assert.equal(second.code, 3, second.stderr);
    assert.match(second.stderr, /ELEASE_HELD/);
    cli.child.kill("SIGKILL");
    await cli.exit;
    const r = await hotpatch([
      "rollout",
      "resume",
      `kill-${cluster}`,
      "--cluster",
      cluster,
      "--nats",
      nats.url,
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    // Every node patched exactly once (agents' audit logs), and each pair's steps ran once each.
    for (const x of nodes) {
      const applies = (await x.audit()).filter((a) => a.action === "apply" && a.result === "ok");
      const done = applies.flatMap((a) => a.processes ?? []).filter((p) => p.outcome === "done");
      assert.equal(done.length, 1, `${x.node}: ${JSON.stringify(applies)}`);
    }
    const store = await RolloutStore.open(nc, cluster);
    const { record, pairs } = await store.load(`kill-${cluster}`);
    assert.equal(record.status.kind, "done");
    for (const [, s] of pairs) {
      assert.deepEqual(
        s.history.map((h) => h.index),
        s.steps.map((_, i) => i),
      );
    }
  });
});
