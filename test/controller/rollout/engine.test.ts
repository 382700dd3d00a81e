/**
 * The rollout engine's loop and failure policy, on fake EngineDeps: agents that keep each node's
 * role and patch in memory, a view that reports every node beating now (or silent), and a store
 * that keeps every write. What the engine asks of agents and writes is observed from the fakes.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AgentApi } from "../../../controller/agents/index.js";
import { applyHeartbeat, type NodeView, nodeHealth } from "../../../controller/cluster/index.js";
import {
  type EngineDeps,
  type PairState,
  pairSteps,
  parsePlan,
  planStages,
  RolloutEngine,
  type RolloutEventBody,
  type RolloutRecord,
} from "../../../controller/rollout/index.js";
import { Heartbeat, Outcome, Role } from "../../../proto/index.js";

const NODES: Record<string, [string, string]> = { p1: ["p1-a", "p1-b"], p2: ["p2-a", "p2-b"] };

/** Two pairs' nodes: roles, patched or not, and which calls failed. */
class FakeCluster {
  readonly roles = new Map<string, Role>([
    ["p1-a", Role.ROLE_ACTIVE],
    ["p1-b", Role.ROLE_STANDBY],
    ["p2-a", Role.ROLE_ACTIVE],
    ["p2-b", Role.ROLE_STANDBY],
  ]);
  readonly patched = new Set<string>();
  readonly calls: string[] = [];
  readonly silent = new Set<string>();
  readonly failApplyOn = new Set<string>();

  agent(node: string): AgentApi {
    const done = (pid: number) => ({ pid, outcome: Outcome.OUTCOME_DONE, errorCode: "", message: "", pauseUs: 1 });
    return {
      node,
      info: async () => ({ role: this.roles.get(node) }) as never,
      stage: async () => {
        this.calls.push(`stage ${node}`);
        return { alreadyStaged: false } as never;
      },
      apply: async () => {
        this.calls.push(`apply ${node}`);
        if (this.failApplyOn.has(node))
          return { results: [{ ...done(7), outcome: Outcome.OUTCOME_FAILED, errorCode: "EUNSAFE_TIMEOUT" }] } as never;
        this.patched.add(node);
        return { results: [done(7)] } as never;
      },
      revert: async () => {
        this.calls.push(`revert ${node}`);
        this.patched.delete(node);
        return { results: [done(7)] } as never;
      },
      switchover: async (role) => {
        this.calls.push(`switchover ${node} ${role}`);
        this.roles.set(node, role === "active" ? Role.ROLE_ACTIVE : Role.ROLE_STANDBY);
        return {} as never;
      },
    };
  }

  /** The node's view: a heartbeat received just now, or 10 s ago when the node is silent. */
  node(pair: string, node: string): NodeView | undefined {
    if (!NODES[pair]?.includes(node)) return undefined;
    const hb = Heartbeat.fromPartial({
      cluster: "c1",
      pair,
      node,
      role: this.roles.get(node) ?? Role.ROLE_UNKNOWN,
      sequence: 1,
      intervalMs: 100,
      runId: "run",
    });
    return applyHeartbeat(undefined, hb, this.silent.has(node) ? Date.now() - 10_000 : Date.now());
  }
}

function record(failurePolicy: string, order = "standby-first"): RolloutRecord {
  const plan = parsePlan(
    [
      "cluster: c1",
      "bundle: /tmp/b",
      "target: {exePath: /usr/bin/svc}",
      `order: ${order}`,
      "canary: {pairs: 1, soak: 0s}",
      "waves: {size: 1, maxParallel: 1, soak: 0s}",
      "gates: {probes: false, noRestart: false, patchActive: false}",
      `failurePolicy: ${failurePolicy}`,
      "agents: {insecure: true}",
    ].join("\n"),
    "plan.yaml",
    "/tmp",
  );
  return {
    id: "r1",
    cluster: "c1",
    plan,
    bundleId: "fix-1",
    stages: planStages(plan, ["p1", "p2"]),
    pairNodes: NODES,
    status: { kind: "running" },
    createdAtMs: Date.now(),
    lastProgressAtMs: Date.now(),
  };
}

/** An engine over the fake cluster, with every event and every pair write kept. */
function engineOn(cluster: FakeCluster, rec: RolloutRecord) {
  const events: RolloutEventBody[] = [];
  const writes: PairState[] = [];
  const deps: EngineDeps = {
    store: {
      savePair: async (_id: string, s: PairState) => {
        writes.push(structuredClone(s));
      },
      saveRecord: async () => undefined,
    } as unknown as EngineDeps["store"],
    view: {
      now: () => Date.now(),
      node: (pair: string, node: string) => cluster.node(pair, node),
      health: (pair: string, node: string, allowed?: number) => {
        const n = cluster.node(pair, node);
        return n ? nodeHealth(n, Date.now(), allowed) : undefined;
      },
    },
    agent: (n) => cluster.agent(n),
    bundle: { id: "fix-1", bytes: Buffer.alloc(0), sha256: "" },
    emit: (e) => events.push(e),
    actor: "test",
    pollMs: 5,
  };
  const engine = new RolloutEngine(deps, { record: rec, pairs: new Map() });
  const run = () => engine.run((soakMs) => pairSteps(rec.plan.order, soakMs));
  return { engine, events, writes, run };
}

describe("rollout engine", () => {
  it("patches each pair's standby, then its other node, stage by stage, and ends done", async () => {
    const cluster = new FakeCluster();
    const { run, events } = engineOn(cluster, record("rollback-pair"));
    assert.deepEqual(await run(), { kind: "done" });
    assert.deepEqual(cluster.calls, [
      "stage p1-a",
      "stage p1-b",
      "apply p1-b",
      "apply p1-a",
      "stage p2-a",
      "stage p2-b",
      "apply p2-b",
      "apply p2-a",
    ]);
    assert.deepEqual([...cluster.patched].sort(), ["p1-a", "p1-b", "p2-a", "p2-b"]);
    assert.deepEqual(
      events.filter((e) => e.type === "pair.done").map((e) => (e as { pair: string }).pair),
      ["p1", "p2"],
    );
  });

  it("records the node to patch before the agent is asked, so a resumed rollout touches the same node", async () => {
    const cluster = new FakeCluster();
    const { run, writes } = engineOn(cluster, record("rollback-pair"));
    await run();
    const firstPatch = writes.findIndex((w) => w.pair === "p1" && w.patched.includes("p1-b"));
    assert.ok(firstPatch >= 0);
    assert.deepEqual(writes[firstPatch]?.targets, { "2": "p1-b" });
    assert.equal(writes[firstPatch]?.next, 2, "written before the patch step completed");
  });

  it("switchover order: patches the standby, makes it active, then patches the old active", async () => {
    const cluster = new FakeCluster();
    const { run } = engineOn(cluster, record("rollback-pair", "switchover"));
    assert.deepEqual(await run(), { kind: "done" });
    assert.deepEqual(cluster.calls.slice(0, 6), [
      "stage p1-a",
      "stage p1-b",
      "apply p1-b",
      "switchover p1-a standby",
      "switchover p1-b active",
      "apply p1-a",
    ]);
    assert.equal(cluster.roles.get("p1-b"), Role.ROLE_ACTIVE);
  });

  it("a failed apply rolls back the pair's patched nodes (rollback-pair) and stops the rollout", async () => {
    const cluster = new FakeCluster();
    cluster.failApplyOn.add("p1-a");
    const { run } = engineOn(cluster, record("rollback-pair"));
    const out = await run();
    assert.equal(out.kind, "failed");
    if (out.kind !== "failed") return;
    assert.equal(out.failure.node, "p1-a");
    assert.equal(out.failure.code, "EAGENT");
    assert.match(out.failure.value, /EUNSAFE_TIMEOUT/);
    assert.deepEqual(out.rolledBack, ["p1/p1-a", "p1/p1-b"]);
    assert.deepEqual(cluster.patched, new Set());
    assert.ok(!cluster.calls.some((c) => c.includes("p2-")), "the next stage never started");
  });

  it("the pause policy leaves the patched nodes as they are and keeps the failure on the pair", async () => {
    const cluster = new FakeCluster();
    cluster.failApplyOn.add("p1-a");
    const { run, writes } = engineOn(cluster, record("pause"));
    const out = await run();
    assert.equal(out.kind, "paused");
    assert.equal(out.kind === "paused" ? out.failure?.node : "", "p1-a");
    assert.deepEqual([...cluster.patched], ["p1-b"]);
    assert.ok(!cluster.calls.some((c) => c.startsWith("revert")));
    assert.equal(writes.at(-1)?.phase.kind, "paused");
  });

  it("a node whose heartbeat is stale fails the pre-check before anything is staged", async () => {
    const cluster = new FakeCluster();
    cluster.silent.add("p1-b");
    const { run } = engineOn(cluster, record("rollback-pair"));
    const out = await run();
    assert.equal(out.kind, "failed");
    if (out.kind !== "failed") return;
    assert.deepEqual(
      { node: out.failure.node, gate: out.failure.gate, code: out.failure.code },
      { node: "p1-b", gate: "precheck", code: "ECLUSTER_NOT_READY" },
    );
    assert.deepEqual(cluster.calls, []);
  });

  it("an abort during a soak rolls back every node this rollout patched", async () => {
    const cluster = new FakeCluster();
    const rec = record("rollback-pair");
    rec.stages[0] = { ...(rec.stages[0] as RolloutRecord["stages"][number]), soakMs: 600_000 };
    const { engine, run, events } = engineOn(cluster, rec);
    const ran = run();
    const soaking = () => events.some((e) => e.type === "soak.progress");
    for (const stop = Date.now() + 10_000; !soaking() && Date.now() < stop; )
      await new Promise((r) => setTimeout(r, 5));
    engine.abort();
    const out = await ran;
    assert.equal(out.kind, "aborted");
    assert.deepEqual(out.kind === "aborted" ? out.rolledBack : [], ["p1/p1-b"]);
    assert.deepEqual(cluster.patched, new Set());
  });
});
