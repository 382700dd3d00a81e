/**
 * End to end: `hotpatch rollout` against real agents (`hotpatch agent`, the native engine) patching
 * real target processes, over a real nats-server. Order is read from the agents' audit logs, the
 * effect from the targets' own output.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { Role } from "../../../proto/index.js";
import { agentClient, call, waitFor } from "../../helpers/agent_harness.js";
import { hotpatch, jsonLines } from "../../helpers/cli.js";
import { until } from "../../helpers/heartbeats.js";
import { startCli, useE2eCluster } from "./e2e_cluster.js";

// The whole suite took 190 s on a 2-core machine with two CPU hogs; the bound only catches a hang.
describe("rollout control against real agents", { timeout: 900_000 }, () => {
  const e = useE2eCluster();
  const { startCluster, writePlan, node, applyTimes } = e;

  it("order switchover: patches the standby, swaps roles through the agents, then patches the old active", async () => {
    await startCluster();
    const plan = await writePlan(e.goodBundle, "order: switchover\npairs: [p1]\n");
    const r = await hotpatch(["rollout", "--plan", plan, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const b = await node("p1-b").audit();
    const a = await node("p1-a").audit();
    const t = (recs: typeof a, action: string) =>
      Date.parse(recs.find((x) => x.action === action && x.result === "ok")?.time ?? "");
    assert.ok(t(b, "apply") < t(a, "switchover"), "standby patched before the swap");
    assert.ok(t(a, "switchover") <= t(b, "switchover"), "old active demoted before the standby is promoted");
    assert.ok(t(b, "switchover") < t(a, "apply"), "old active patched after the swap");
    // `cluster status` prints what it heard while it listened: asked again until it heard both nodes
    // (a busy machine may hold up a beat for longer than it listens), then their roles must be swapped.
    const roles = await waitFor(
      "cluster status to hear p1-a and p1-b",
      async () => {
        const s = await hotpatch(["cluster", "status", "--cluster", e.cluster, "--nats", e.nats.url, "--json"]);
        assert.equal(s.code, 0, s.stderr);
        const nodes = (jsonLines(s.stdout)[0] as { nodes: { node: string; role: string }[] }).nodes;
        const r = Object.fromEntries(nodes.map((x) => [x.node, x.role]));
        return r["p1-a"] && r["p1-b"] ? r : undefined;
      },
      30_000,
    );
    assert.deepEqual([roles["p1-a"], roles["p1-b"]], ["standby", "active"]);
  });

  it("roles that change mid-soak are re-read: the unpatched node is patched next, never the patched one twice", async () => {
    await startCluster();
    const plan = await writePlan(e.goodBundle, "pairs: [p1]\n");
    const file = plan.replace(".yaml", "-roles.yaml");
    await writeFile(file, (await readFile(plan, "utf8")).replace("soak: 1s", "soak: 4s"));
    const cli = startCli(["rollout", "--plan", file, "--json"]);
    await until(() => cli.events().some((e) => e.type === "step.started" && e.step === "soak"), 30_000, "soak");
    // An HA failover while the patched standby soaks: p1-b becomes active, p1-a standby.
    for (const [name, role] of [
      ["p1-a", Role.ROLE_STANDBY],
      ["p1-b", Role.ROLE_ACTIVE],
    ] as const) {
      const c = agentClient(node(name).grpcPort);
      await call(c, c.switchover, { targetRole: role, requestedBy: "ha-drill" });
      c.close();
    }
    assert.equal(await cli.exit, 0, cli.stderr());
    const changed = cli.events().find((e) => e.type === "roles.changed") as { now: { active: string } } | undefined;
    assert.equal(changed?.now.active, "p1-b");
    for (const name of ["p1-a", "p1-b"]) assert.equal((await applyTimes(name)).length, 1, name);
  });

  it("abort during a soak rolls back at once; the controller exits 4", async () => {
    await startCluster();
    const plan = await writePlan(e.goodBundle);
    const file = plan.replace(".yaml", "-abort.yaml");
    await writeFile(
      file,
      (await readFile(plan, "utf8")).replace("soak: 1s", "soak: 60s").replace("60s\ndiscovery", "120s\ndiscovery"),
    );
    const cli = startCli(["rollout", "--plan", file, "--json", "--id", `abort-${e.cluster}`]);
    await until(() => cli.events().some((e) => e.type === "step.started" && e.step === "soak"), 30_000, "soak");
    const started = Date.now();
    const r = await hotpatch(["rollout", "abort", `abort-${e.cluster}`, "--cluster", e.cluster, "--nats", e.nats.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await cli.exit, 4, cli.stderr());
    assert.ok(Date.now() - started < 30_000, "did not wait out the 60 s soak");
    assert.equal((await node("p1-b").audit()).filter((x) => x.action === "revert" && x.result === "ok").length, 1);
    assert.deepEqual(await applyTimes("p1-a"), []);
    const aborted = cli.events().find((e) => e.type === "rollout.aborted") as { reason: string; rolledBack: string[] };
    assert.deepEqual([aborted.reason, aborted.rolledBack], ["requested", ["p1/p1-b"]]);
  });

  it("a rollout that makes no progress before its deadline aborts itself and rolls back (exit 4)", async () => {
    await startCluster();
    const plan = await writePlan(e.goodBundle);
    const file = plan.replace(".yaml", "-deadline.yaml");
    // The canary soak (4 s) is the window in which the test freezes the active's agent, before the
    // controller asks it for its role; the deadline (8 s) leaves a busy machine time for every step
    // before that (a step that takes longer than the deadline would abort the rollout too early).
    await writeFile(
      file,
      (await readFile(plan, "utf8"))
        .replace("soak: 1s", "soak: 4s")
        .replace("progressDeadline: 60s", "progressDeadline: 8s")
        .replace("callTimeout: 20s", "callTimeout: 60s"),
    );
    const cli = startCli(["rollout", "--plan", file, "--json"]);
    try {
      await until(() => cli.events().some((e) => e.type === "step.started" && e.step === "soak"), 30_000, "soak");
      node("p1-a").freeze(); // the active's agent hangs: reading roles before patching it never returns
      assert.equal(await cli.exit, 4, cli.stderr());
    } finally {
      node("p1-a").thaw();
    }
    const aborted = cli.events().find((e) => e.type === "rollout.aborted") as { reason: string; rolledBack: string[] };
    assert.deepEqual([aborted.reason, aborted.rolledBack], ["deadline", ["p1/p1-b"]]);
    assert.deepEqual(await applyTimes("p1-a"), []);
  });
});
