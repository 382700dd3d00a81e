/**
 * The cluster on real containers: three NATS servers (JetStream, R3 KV) and two 1+1 pairs, each
 * node a container with its agent and the quote service, the controller on this host. Each
 * scenario is judged from outside the nodes: the answers a client of every node got, the agents'
 * audit logs, the rollout's exit code and events. Each prints its figures; the suite ends with a
 * summary table. Skipped, saying why, only when no Docker engine can be started.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { credentials } from "@grpc/grpc-js";
import { ClusterView, liveness } from "../../controller/cluster/index.js";
import { RolloutStore } from "../../controller/rollout/index.js";
import { readElf } from "../../native/index.js";
import { AgentServiceClient } from "../../proto/index.js";
import { startCli } from "../controller/e2e/e2e_cluster.js";
import { call, makeBundle, waitFor } from "../helpers/agent_harness.js";
import { hotpatch } from "../helpers/cli.js";
import { compileFixture } from "../helpers/fixtures.js";
import { builtImages, whyNoDocker } from "./images.js";

const noDocker = await whyNoDocker();
const ccModule = noDocker === null ? await import("./container_cluster.js") : null;
const refused = ccModule?.nodeConfigProblem() ?? null;
const notHere =
  noDocker ??
  (refused === null
    ? null
    : `the node containers' agent configuration is refused (their gRPC must move to mTLS): ${refused}`);
const cc = notHere === null ? ccModule : null;
const qc = notHere === null ? await import("./quote_client.js") : null;

const CLUSTER = `ct${process.pid}`;
const GOOD = "fix-price";
const BAD = "fix-price-crash";

/** One row of the summary table. */
interface Row {
  scenario: string;
  outcome: string;
  figures: string;
}
const rows: Row[] = [];

function report(t: { diagnostic(msg: string): void }, row: Row): void {
  rows.push(row);
  t.diagnostic(`${row.scenario}: ${row.outcome}; ${row.figures}`);
}

describe("the cluster on containers", { skip: notHere ?? false, timeout: 600_000 }, () => {
  let c: Awaited<ReturnType<NonNullable<typeof cc>["startContainerCluster"]>>;
  let client: ReturnType<NonNullable<typeof qc>["startQuoteClient"]>;
  let goodBundle = "";
  let badBundle = "";
  let runs = 0;

  const agent = (node: string) => new AgentServiceClient(c.node(node).grpc(), credentials.createInsecure());

  /** A rollout plan over the cluster; `soak` for the canary, `extra` YAML lines appended. */
  const plan = async (bundle: string, soak: string, extra = "") => {
    const file = path.join(c.dir, `plan-${++runs}.yaml`);
    const nodes = c.nodes.map((n) => `${n.node}: "${n.grpc()}"`).join(", ");
    await writeFile(
      file,
      `cluster: ${CLUSTER}
nats: {servers: [${c.natsUrls.map((u) => `"${u}"`).join(", ")}]}
bundle: ${bundle}
target: {exePath: ${cc?.SERVICE_BIN}}
canary: {pairs: [p1], soak: ${soak}}
waves: {size: 1, maxParallel: 1, soak: 500ms}
progressDeadline: 120s
discovery: 2s
gates: {heartbeatGap: {intervals: 30}}
agents: {insecure: true, callTimeout: 20s, nodes: {${nodes}}}
${extra}`,
    );
    return file;
  };

  /** Each node's audit log length now, so a scenario counts only what it did. */
  const mark = async (): Promise<Record<string, number>> =>
    Object.fromEntries(await Promise.all(c.nodes.map(async (n) => [n.node, (await n.audit()).length] as const)));
  /** Records of `action` for `bundle` on `node` since `m` (successful ones only, for applies). */
  const since = async (m: Record<string, number>, node: string, action: "apply" | "revert", bundle: string) =>
    (await c.node(node).audit())
      .slice(m[node] ?? 0)
      .filter(
        (r) => r.action === action && r.request?.bundleId === bundle && (action === "revert" || r.result === "ok"),
      ).length;
  /** Resolves with the time (performance.now()) the rollout printed an event of `type`. */
  const eventAt = (cli: ReturnType<typeof startCli>, type: string, ms = 60_000) =>
    waitFor(
      `rollout event ${type}`,
      () => (cli.events().some((e) => e.type === type) ? performance.now() : undefined),
      ms,
      10,
    );
  /** Waits until the rollout soaks pair `pair` (after patching its standby). */
  const soaking = (cli: ReturnType<typeof startCli>, pair: string) =>
    waitFor(
      `the soak of ${pair}`,
      () =>
        cli.events().some((e) => e.type === "step.started" && e.step === "soak" && e.pair === pair) ? true : undefined,
      60_000,
    );
  const serving = (node: string) =>
    waitFor(
      `${node} serving again`,
      () => (client.counts(node).lastAnswerAt > performance.now() - 500 ? true : undefined),
      60_000,
    );

  /** Every node back to v1 and serving: patches reverted through the agents. */
  const reset = async () => {
    for (const n of c.nodes) {
      const a = agent(n.node);
      try {
        for (const id of [GOOD, BAD]) {
          await call(a, a.revert, {
            bundleId: id,
            selector: { exePath: cc?.SERVICE_BIN ?? "", buildId: "", pid: 0, cgroup: "", libraryPath: "" },
            unload: true,
            requestedBy: "reset",
          }).catch(() => undefined);
        }
      } finally {
        a.close();
      }
    }
  };

  before(async () => {
    assert.ok(cc && qc);
    const t0 = performance.now();
    c = await cc.startContainerCluster(CLUSTER);
    const buildId = (await readElf(c.serviceBinary)).buildId ?? "";
    const fns = [
      { symbol: "compute_price", replacement: "compute_price" },
      { symbol: "service_version", replacement: "service_version" },
    ];
    const fix = await compileFixture("../../deploy/demo/fix/fix_price.c", ["-O2", "-shared", "-fPIC"]);
    const crash = await compileFixture("c/quote_crash_patch.c", ["-O2", "-shared", "-fPIC"]);
    await makeBundle(c.dir, GOOD, { path: cc.SERVICE_BIN, buildId }, fix, fns);
    await makeBundle(c.dir, BAD, { path: cc.SERVICE_BIN, buildId }, crash, fns);
    goodBundle = path.join(c.dir, `${GOOD}.tar`);
    badBundle = path.join(c.dir, `${BAD}.tar`);
    client = qc.startQuoteClient(Object.fromEntries(c.nodes.map((n) => [n.node, () => n.ip])));
    await waitFor(
      "every node to answer the client",
      () => (c.nodes.every((n) => client.counts(n.node).role !== "") ? true : undefined),
      60_000,
    );
    rows.push({
      scenario: "cluster up",
      outcome: "3 NATS + 4 nodes",
      figures: `${((performance.now() - t0) / 1000).toFixed(1)} s; images ${builtImages.length ? `built: ${builtImages.join(", ")}` : "all reused (same content)"}`,
    });
  });

  after(async () => {
    await client?.stop();
    await c?.stop();
    const w = Math.max(...rows.map((r) => r.scenario.length), 8);
    const o = Math.max(...rows.map((r) => r.outcome.length), 7);
    const lines = [
      "container suite summary",
      `${"scenario".padEnd(w)}  ${"outcome".padEnd(o)}  figures`,
      ...rows.map((r) => `${r.scenario.padEnd(w)}  ${r.outcome.padEnd(o)}  ${r.figures}`),
    ];
    console.log(lines.join("\n"));
  });

  it("every agent, in its container's own PID namespace, says in `cluster status` that it scans /proc for new processes", async (t) => {
    const status = await hotpatch(["cluster", "status", "--cluster", CLUSTER, "--nats", c.natsUrls.join(",")]);
    assert.equal(status.code, 0, status.stderr);
    for (const n of c.nodes)
      assert.match(
        status.stdout,
        new RegExp(
          `note: ${n.node} finds new processes by scanning /proc every 50 ms: the agent runs in a PID namespace of its own`,
        ),
      );
    report(t, {
      scenario: "follow mode",
      outcome: "4/4 say proc-scan",
      figures: "cluster status notes, from heartbeats",
    });
  });

  it("a full rollout patches all four nodes, standby before active, with no failed request", async (t) => {
    const before = client.total();
    const m = await mark();
    const t0 = performance.now();
    const cli = startCli(["rollout", "--plan", await plan(goodBundle, "1s"), "--json"]);
    const code = await cli.exit;
    const took = performance.now() - t0;
    assert.equal(code, 0, cli.stderr());
    assert.equal(cli.events().at(-1)?.type, "rollout.done");
    for (const n of c.nodes) assert.equal(await since(m, n.node, "apply", GOOD), 1, n.node);
    // The active nodes answer v2 now, with the right price; nothing failed meanwhile.
    for (const n of ["p1-a", "p2-b"]) {
      const at = client.counts(n).v2;
      await waitFor(`${n} answering v2`, () => (client.counts(n).v2 > at + 3 ? true : undefined), 20_000);
    }
    const after = client.total();
    assert.equal(after.failed - before.failed, 0);
    assert.equal(after.wrong - before.wrong, 0);
    report(t, {
      scenario: "full rollout",
      outcome: "exit 0, 4/4 patched",
      figures: `${(took / 1000).toFixed(1)} s, ${after.served - before.served} requests served, ${after.failed - before.failed} failed, ${after.wrong - before.wrong} wrong`,
    });
    await reset();
  });

  it("a bad patch is stopped at the first standby and rolled back; the active is untouched", async (t) => {
    const active = client.counts("p1-a");
    const m = await mark();
    const cli = startCli(["rollout", "--plan", await plan(badBundle, "3s"), "--json"]);
    const code = await cli.exit;
    assert.equal(code, 1, cli.stderr());
    const failed = cli.events().find((e) => e.type === "pair.failed") as { failure: { node: string; gate: string } };
    assert.equal(failed.failure.node, "p1-b");
    assert.equal(await since(m, "p1-b", "apply", BAD), 1);
    assert.equal(await since(m, "p1-b", "revert", BAD), 1);
    for (const n of ["p1-a", "p2-a", "p2-b"]) assert.equal(await since(m, n, "apply", BAD), 0, n);
    // The client of the active saw no failure and only v1 answers, throughout.
    const now = client.counts("p1-a");
    assert.equal(now.failed, active.failed);
    assert.equal(now.v2, active.v2);
    assert.ok(now.v1 > active.v1);
    report(t, {
      scenario: "bad patch",
      outcome: `exit 1, stopped at p1-b (${failed.failure.gate})`,
      figures: `active p1-a: ${now.v1 - active.v1} v1 answers, 0 failed; standby's service crashed`,
    });
    // The crashed service stays a zombie under the agent (pid 1): a new container run brings it back.
    await c.restartNode("p1-b");
    await serving("p1-b");
  });

  it("a host killed mid-rollout (docker kill) stops the rollout at that pair; the active is untouched", async (t) => {
    const active = client.counts("p1-a");
    const m = await mark();
    const cli = startCli(["rollout", "--plan", await plan(goodBundle, "20s"), "--json"]);
    await soaking(cli, "p1");
    const killedAt = performance.now();
    await c.kill(c.node("p1-b").container);
    const failedAt = await eventAt(cli, "pair.failed");
    assert.equal(await cli.exit, 1, cli.stderr());
    const failed = cli.events().find((e) => e.type === "pair.failed") as { failure: { node: string; gate: string } };
    assert.deepEqual([failed.failure.node, failed.failure.gate], ["p1-b", "heartbeatGap"]);
    assert.match(cli.stderr(), /p1-b gate heartbeatGap failed/);
    for (const n of ["p1-a", "p2-a", "p2-b"]) assert.equal(await since(m, n, "apply", GOOD), 0, n);
    const now = client.counts("p1-a");
    assert.equal(now.failed, active.failed);
    assert.equal(now.v2, active.v2);
    report(t, {
      scenario: "host killed",
      outcome: "exit 1, stopped at p1-b (heartbeatGap)",
      figures: `detected ${((failedAt - killedAt) / 1000).toFixed(1)} s after docker kill (gate: 30 × ${cc?.HEARTBEAT_MS} ms), active 0 failed`,
    });
    await c.restartNode("p1-b");
    await serving("p1-b");
  });

  it("a host frozen (docker pause) stops the rollout safely, saying why, and is rolled back once thawed", async (t) => {
    const active = client.counts("p1-a");
    const m = await mark();
    const cli = startCli(["rollout", "--plan", await plan(goodBundle, "20s"), "--json"]);
    await soaking(cli, "p1");
    const frozenAt = performance.now();
    await c.pause("p1-b");
    const failedAt = await eventAt(cli, "pair.failed");
    await c.unpause("p1-b");
    assert.equal(await cli.exit, 1, cli.stderr());
    assert.match(cli.stderr(), /p1-b gate heartbeatGap failed/);
    // The rollback reached the thawed node: its patch is reverted, and p1-a was never touched.
    assert.equal(await since(m, "p1-b", "apply", GOOD), 1);
    assert.equal(await since(m, "p1-b", "revert", GOOD), 1);
    for (const n of ["p1-a", "p2-a", "p2-b"]) assert.equal(await since(m, n, "apply", GOOD), 0, n);
    assert.equal(client.counts("p1-a").failed, active.failed);
    const rolled = cli.events().find((e) => e.type === "rollback.node") as { ok: boolean } | undefined;
    assert.equal(rolled?.ok, true);
    report(t, {
      scenario: "host frozen",
      outcome: "exit 1, stopped at p1-b (heartbeatGap), rolled back",
      figures: `detected ${((failedAt - frozenAt) / 1000).toFixed(1)} s after docker pause, active 0 failed`,
    });
  });

  it("a standby cut off from the network (docker network disconnect) is seen lost at once, its active serves on, and it is seen again once healed", async (t) => {
    const view = ClusterView.watch(c.nc, CLUSTER);
    try {
      await waitFor("p2-a heard", () => (view.node("p2", "p2-a") ? true : undefined), 20_000);
      const active = client.counts("p2-b");
      const cutAt = performance.now();
      await c.disconnect("p2-a");
      const lostAt = await waitFor(
        "p2-a seen lost",
        () => {
          const n = view.node("p2", "p2-a");
          return n && liveness(n, view.now()).missedNow >= 3 ? performance.now() : undefined;
        },
        20_000,
        10,
      );
      const seq = view.node("p2", "p2-a")?.sequence ?? 0;
      const runId = view.node("p2", "p2-a")?.runId;
      await c.reconnect("p2-a");
      const healedAt = performance.now();
      const back = await waitFor(
        "p2-a heard again",
        () => {
          const n = view.node("p2", "p2-a");
          return n && n.sequence > seq && liveness(n, view.now()).missedNow === 0 ? n : undefined;
        },
        30_000,
        10,
      );
      const seenAt = performance.now();
      // The agent ran on meanwhile: the same run (no restart) is heard again.
      assert.equal(back.runId, runId);
      const now = client.counts("p2-b");
      assert.equal(now.failed, active.failed, "the active served on");
      assert.ok(now.v1 + now.v2 > active.v1 + active.v2);
      report(t, {
        scenario: "standby cut off",
        outcome: "lost, then heard again",
        figures: `loss seen ${((lostAt - cutAt) / 1000).toFixed(2)} s after disconnect, heard ${((seenAt - healedAt) / 1000).toFixed(2)} s after reconnect, ${back.missedTotal} beats missed, active 0 failed`,
      });
    } finally {
      view.close();
    }
  });

  it("a controller SIGKILLed at two points is resumed to the end, every step exactly once; a second controller is refused meanwhile", async (t) => {
    const m = await mark();
    const id = `resume-${CLUSTER}`;
    const file = await plan(goodBundle, "4s", "");
    const resume = () =>
      startCli(["rollout", "resume", id, "--cluster", CLUSTER, "--nats", c.natsUrls.join(","), "--json"]);
    const first = startCli(["rollout", "--plan", file, "--json", "--id", id]);
    await soaking(first, "p1");
    // A second controller for the same cluster is refused while the first holds the lease.
    const rival = startCli(["rollout", "--plan", file, "--json"]);
    assert.equal(await rival.exit, 3, rival.stderr());
    assert.match(rival.stderr(), /ELEASE_HELD/);
    first.child.kill("SIGKILL");
    await first.exit;
    const second = resume();
    await soaking(second, "p2");
    second.child.kill("SIGKILL");
    await second.exit;
    const last = resume();
    assert.equal(await last.exit, 0, last.stderr());
    for (const n of c.nodes) assert.equal(await since(m, n.node, "apply", GOOD), 1, n.node);
    const store = await RolloutStore.open(c.nc, CLUSTER);
    const { record, pairs } = await store.load(id);
    assert.equal(record.status.kind, "done");
    let steps = 0;
    for (const [, st] of pairs) {
      assert.deepEqual(
        st.history.map((h) => h.index),
        st.steps.map((_, i) => i),
      );
      steps += st.steps.length;
    }
    report(t, {
      scenario: "controller killed",
      outcome: "2 kills, resumed, exit 0; rival exit 3",
      figures: `${steps} steps each run once, 4/4 nodes patched once (audit logs)`,
    });
    await reset();
  });

  it("a switchover drill swaps the active of p1 with its standby, timed from heartbeats; clients see the roles swap", async (t) => {
    const before = { a: client.counts("p1-a"), b: client.counts("p1-b") };
    const drill = startCli([
      "drill",
      "switchover",
      "--pair",
      "p1",
      "--cluster",
      CLUSTER,
      "--nats",
      c.natsUrls.join(","),
      "--insecure",
      "--json",
    ]);
    assert.equal(await drill.exit, 0, drill.stderr());
    const r = drill.events().at(-1) as {
      oldActive: string;
      newActive: string;
      detectionMs: number;
      takeoverMs: number;
      bothActiveSeen: boolean;
      healthyAfter: boolean;
    };
    assert.deepEqual([r.oldActive, r.newActive, r.bothActiveSeen, r.healthyAfter], ["p1-a", "p1-b", false, true]);
    // Seen by the client: p1-b now answers quotes, p1-a says STANDBY.
    await waitFor("p1-b serving quotes", () => {
      const b = client.counts("p1-b");
      return b.role === "active" && b.v1 + b.v2 > before.b.v1 + before.b.v2 ? true : undefined;
    });
    await waitFor("p1-a standby", () => (client.counts("p1-a").role === "standby" ? true : undefined));
    const lost = client.counts("p1-a").failed - before.a.failed + (client.counts("p1-b").failed - before.b.failed);
    assert.equal(lost, 0);
    report(t, {
      scenario: "switchover drill",
      outcome: "p1-a -> p1-b, never both active",
      figures: `detection ${r.detectionMs} ms, takeover ${r.takeoverMs} ms (heartbeats every ${cc?.HEARTBEAT_MS} ms), ${lost} requests failed`,
    });
  });

  it("one NATS server lost during a rollout: the rollout completes on the other two (R3 state)", async (t) => {
    const before = client.total();
    const m = await mark();
    const t0 = performance.now();
    const cli = startCli(["rollout", "--plan", await plan(goodBundle, "2s"), "--json"]);
    await soaking(cli, "p1");
    await c.kill(c.nats[0] as NonNullable<(typeof c.nats)[0]>);
    assert.equal(await cli.exit, 0, cli.stderr());
    for (const n of c.nodes) assert.equal(await since(m, n.node, "apply", GOOD), 1, n.node);
    const after = client.total();
    assert.equal(after.failed - before.failed, 0);
    report(t, {
      scenario: "NATS node lost",
      outcome: "exit 0, 4/4 patched",
      figures: `${((performance.now() - t0) / 1000).toFixed(1)} s, ${after.served - before.served} requests served, 0 failed`,
    });
  });
});
