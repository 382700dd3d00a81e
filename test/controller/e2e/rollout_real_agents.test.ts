/**
 * End to end: `hotpatch rollout` against real agents (`hotpatch agent`, the native engine) patching
 * real target processes, over a real nats-server. Order is read from the agents' audit logs, the
 * effect from the targets' own output.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { RolloutStore } from "../../../controller/rollout/index.js";
import { hotpatch, jsonLines } from "../../helpers/cli.js";
import { until } from "../../helpers/heartbeats.js";
import { startCli, useE2eCluster } from "./e2e_cluster.js";

// The whole suite took 190 s on a 2-core machine with two CPU hogs; the bound only catches a hang.
describe("rollout against real agents", { timeout: 900_000 }, () => {
  const e = useE2eCluster();
  const { startCluster, writePlan, node, applyTimes } = e;

  it("a good patch rolls through both pairs, standby before active, and the targets run the new code", async () => {
    await startCluster();
    const plan = await writePlan(e.goodBundle);
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
    for (const x of e.nodes) {
      await until(
        () => /tally old=\d+ new=[1-9]/.test(x.output().split("\n").slice(-5).join("\n")),
        15_000,
        `${x.node} new code`,
      );
    }
  });

  it("a patch that breaks the service on the standby stops before any active node is touched, and is rolled back", async () => {
    await startCluster();
    const plan = await writePlan(e.badBundle);
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
    const plan = await writePlan(e.goodBundle, "");
    const file = plan.replace(".yaml", "-long.yaml");
    await writeFile(file, (await readFile(plan, "utf8")).replace("soak: 1s", "soak: 20s"));
    const cli = startCli(["rollout", "--plan", file, "--json"]);
    await until(() => cli.events().some((e) => e.type === "step.started" && e.step === "soak"), 30_000, "soak");
    node("p1-b").freeze();
    // The gap gate fails 3 s (30 intervals) into the silence.
    await until(() => cli.events().some((e) => e.type === "pair.failed"), 15_000, "gate failure");
    node("p1-b").thaw();
    assert.equal(await cli.exit, 1);
    const failed = cli.events().find((e) => e.type === "pair.failed") as { failure: { node: string; gate: string } };
    assert.deepEqual([failed.failure.node, failed.failure.gate], ["p1-b", "heartbeatGap"]);
    assert.deepEqual(await applyTimes("p1-a"), []);
    assert.equal((await node("p1-b").audit()).filter((x) => x.action === "revert").length, 1);
  });

  it("a controller killed mid-soak resumes to the same end state without repeating a step; a second controller is refused meanwhile", async () => {
    await startCluster();
    const plan = await writePlan(e.goodBundle);
    const file = plan.replace(".yaml", "-kill.yaml");
    await writeFile(file, (await readFile(plan, "utf8")).replace("soak: 1s", "soak: 5s"));
    const cli = startCli(["rollout", "--plan", file, "--json", "--id", `kill-${e.cluster}`]);
    await until(() => cli.events().some((e) => e.type === "step.started" && e.step === "soak"), 30_000, "soak");
    const second = await hotpatch(["rollout", "--plan", file]);
    assert.equal(second.code, 3, second.stderr);
    assert.match(second.stderr, /ELEASE_HELD/);
    cli.child.kill("SIGKILL");
    await cli.exit;
    const r = await hotpatch([
      "rollout",
      "resume",
      `kill-${e.cluster}`,
      "--cluster",
      e.cluster,
      "--nats",
      e.nats.url,
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    // Every node patched exactly once (agents' audit logs), and each pair's steps ran once each.
    for (const x of e.nodes) {
      const applies = (await x.audit()).filter((a) => a.action === "apply" && a.result === "ok");
      const done = applies.flatMap((a) => a.processes ?? []).filter((p) => p.outcome === "done");
      assert.equal(done.length, 1, `${x.node}: ${JSON.stringify(applies)}`);
    }
    const store = await RolloutStore.open(e.nc, e.cluster);
    const { record, pairs } = await store.load(`kill-${e.cluster}`);
    assert.equal(record.status.kind, "done");
    for (const [, s] of pairs) {
      assert.deepEqual(
        s.history.map((h) => h.index),
        s.steps.map((_, i) => i),
      );
    }
  });
});
