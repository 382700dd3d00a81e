/** The cluster view and `hotpatch cluster status`, fed by real protobuf heartbeats on a real nats-server. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ClusterView, liveness } from "../../../controller/cluster/index.js";
import { hotpatch, jsonLines } from "../../helpers/cli.js";
import { beatEvery, publishBeat, sleep, until } from "../../helpers/heartbeats.js";
import { type NatsServer, startNatsServer } from "../../helpers/nats_server.js";

describe("cluster view", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.close();
  });

  it("keeps each node's role, sequence, services and patches, grouped by pair", async () => {
    const view = ClusterView.watch(nc, "c1");
    try {
      await nc.flush();
      await publishBeat(nc, { pair: "p1", node: "a", role: "active", sequence: 1 });
      await publishBeat(nc, {
        pair: "p1",
        node: "b",
        role: "standby",
        sequence: 9,
        patches: [{ pid: 100, patchId: "fix-1", state: "active" }],
        metrics: { qps: 12 },
      });
      await publishBeat(nc, { pair: "p2", node: "c", role: "unknown", sequence: 1 });
      await until(() => view.nodes().length === 3);
      assert.deepEqual([...view.pairs().keys()], ["p1", "p2"]);
      const b = view.node("p1", "b");
      assert.equal(b?.role, "standby");
      assert.equal(b?.sequence, 9);
      assert.deepEqual(b?.patches, [{ pid: 100, patchId: "fix-1", state: "active" }]);
      assert.deepEqual(b?.metrics, { qps: 12 });
      assert.equal(view.node("p2", "c")?.role, "unknown");
    } finally {
      view.close();
    }
  });

  it("counts missed beats from sequence gaps and from the announced interval", async () => {
    const view = ClusterView.watch(nc, "c1");
    try {
      await nc.flush();
      await publishBeat(nc, { pair: "p3", node: "x", sequence: 1, intervalMs: 40 });
      await publishBeat(nc, { pair: "p3", node: "x", sequence: 5, intervalMs: 40 });
      await until(() => view.node("p3", "x")?.sequence === 5);
      assert.equal(view.node("p3", "x")?.missedTotal, 3);
      await sleep(200);
      const live = view.liveness("p3", "x");
      assert.ok(live && live.missedNow >= 4, JSON.stringify(live));
      // A new agent run restarts its sequence: that is not a gap. (It announces a long interval, so
      // that its age cannot make it overdue however late this process reads the view.)
      await publishBeat(nc, { pair: "p3", node: "x", sequence: 1, intervalMs: 60_000, runId: "run-2" });
      await until(() => view.node("p3", "x")?.runId === "run-2");
      assert.equal(view.node("p3", "x")?.missedTotal, 3);
      assert.equal(
        liveness(view.node("p3", "x") as NonNullable<ReturnType<typeof view.node>>, Date.now()).missedNow,
        0,
      );
    } finally {
      view.close();
    }
  });

  it("a beat counts as missed only once it is more than half an interval overdue", () => {
    const node = { receivedAtMs: 10_000, intervalMs: 100 } as Parameters<typeof liveness>[0];
    assert.deepEqual(liveness(node, 10_102), { ageMs: 102, missedNow: 0 });
    assert.deepEqual(liveness(node, 10_149), { ageMs: 149, missedNow: 0 });
    assert.deepEqual(liveness(node, 10_151), { ageMs: 151, missedNow: 1 });
    assert.deepEqual(liveness(node, 10_460), { ageMs: 460, missedNow: 4 });
    assert.deepEqual(liveness(node, 9_000), { ageMs: 0, missedNow: 0 });
  });

  it("ignores heartbeats of other clusters, bodies that disagree with their subject, and garbage", async () => {
    const view = ClusterView.watch(nc, "c1");
    try {
      await nc.flush();
      await publishBeat(nc, { cluster: "c2", pair: "p1", node: "other", sequence: 1 });
      nc.publish("hotpatch.hb.c1.p1.liar", new Uint8Array([0xff, 0xff, 0xff]));
      // A c1 heartbeat body for node "a" published under node "b"'s subject.
      const { Heartbeat } = await import("../../../proto/index.js");
      nc.publish(
        "hotpatch.hb.c1.p1.b",
        Heartbeat.encode(Heartbeat.fromPartial({ cluster: "c1", pair: "p1", node: "a", sequence: 1 })).finish(),
      );
      await nc.flush();
      await sleep(100);
      assert.equal(view.nodes().length, 0);
      assert.equal(view.rejected, 2);
    } finally {
      view.close();
    }
  });

  it("rejects heartbeats no agent sends: an interval of 0, a NaN metric, a sequence beyond 2^53", async () => {
    const view = ClusterView.watch(nc, "c1");
    try {
      await nc.flush();
      const { Heartbeat } = await import("../../../proto/index.js");
      const beat = (extra: Record<string, unknown>) =>
        nc.publish(
          "hotpatch.hb.c1.p1.a",
          Heartbeat.encode(
            Heartbeat.fromPartial({ cluster: "c1", pair: "p1", node: "a", sequence: 1, intervalMs: 100, ...extra }),
          ).finish(),
        );
      beat({ intervalMs: 0 });
      beat({ metrics: { "svc.errors": Number.NaN } });
      beat({ sequence: 2 ** 60 });
      await nc.flush();
      await until(() => view.rejected === 3, 5000, "three rejected heartbeats");
      assert.equal(view.nodes().length, 0);
    } finally {
      view.close();
    }
  });

  it("`hotpatch cluster status` shows every pair with role, health, heartbeat age and patches", async () => {
    // Sent every 100 ms, announced as 2 s: the MISSED column stays 0 however busy the machine is. The
    // command listens 2.5 s, so both nodes are heard even if this process or the command is held up
    // for a while, and a beat's age (< 1.5 s) is told apart from the time since the first one (~2.5 s).
    const a = beatEvery(nc, 100, () => ({ cluster: "shop", pair: "p1", node: "a", role: "active" }), 2000);
    const b = beatEvery(
      nc,
      100,
      () => ({
        cluster: "shop",
        pair: "p1",
        node: "b",
        role: "standby",
        patches: [{ pid: 100, patchId: "fix-1", state: "active" }],
        services: [{ name: "web", healthy: false, pid: 100, startTime: 1, failedProbe: "http" }],
      }),
      2000,
    );
    try {
      const r = await hotpatch(["cluster", "status", "--cluster", "shop", "--nats", nats.url, "--wait", "2500"]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.match(lines[0] ?? "", /PAIR\s+NODE\s+ROLE\s+HEALTH\s+HB AGE\s+MISSED\s+PATCHES/);
      assert.match(lines[1] ?? "", /^p1\s+a\s+active\s+ok\s+\d+ms\s+0\s+-/);
      assert.match(lines[2] ?? "", /^\s+b\s+standby\s+sick:web\s+\d+ms\s+0\s+fix-1:active×1/);
      const j = await hotpatch([
        "cluster",
        "status",
        "--cluster",
        "shop",
        "--nats",
        nats.url,
        "--wait",
        "2500",
        "--json",
      ]);
      assert.equal(j.code, 0, j.stderr);
      const doc = jsonLines(j.stdout)[0] as {
        nodes: { node: string; role: string; healthy: boolean; heartbeatAgeMs: number }[];
      };
      assert.deepEqual(
        doc.nodes.map((n) => [n.node, n.role, n.healthy]),
        [
          ["a", "active", true],
          ["b", "standby", false],
        ],
      );
      assert.ok(
        doc.nodes.every((n) => n.heartbeatAgeMs < 1500),
        JSON.stringify(doc.nodes.map((n) => n.heartbeatAgeMs)),
      );
    } finally {
      a.stop();
      b.stop();
    }
  });

  it("`hotpatch cluster status` fails (exit 1) when no agent of the cluster is heard", async () => {
    const r = await hotpatch(["cluster", "status", "--cluster", "silent", "--nats", nats.url, "--wait", "200"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no heartbeats from cluster silent/);
  });
});
