/** Gates evaluated on real protobuf heartbeats received from a real nats-server. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ClusterView } from "../../../controller/cluster/index.js";
import {
  baselineOf,
  evaluateGates,
  firstEnforcedFailure,
  type Gates,
  gateCount,
  parsePlan,
} from "../../../controller/rollout/index.js";
import { beatEvery, publishBeat, sleep, until } from "../../helpers/heartbeats.js";
import { type NatsServer, startNatsServer } from "../../helpers/nats_server.js";

function gatesFrom(yaml: string): Gates {
  return parsePlan(
    `cluster: c1\nbundle: b\ntarget: {exePath: /bin/x}\nagents: {insecure: true}\ngates: ${yaml}`,
    "p.yaml",
    "/",
  ).gates;
}

const PATCHED = [{ pid: 100, patchId: "fix-1", state: "active" as const }];
/**
 * The interval the test heartbeats announce. Tests about content send beats every 50 ms but
 * announce 1 s, so their gap gate (3 intervals) holds even when a busy machine delays this
 * process's timers or the reading of a beat by a second or two.
 */
const ANNOUNCED_MS = 1000;

describe("gates on heartbeats", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let view: ClusterView;
  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    view = ClusterView.watch(nc, "c1");
    await nc.flush();
  });
  after(async () => {
    view?.close();
    await nc?.close();
    await nats?.close();
  });

  const gates = gatesFrom("{heartbeatGap: {intervals: 3}}");
  const evalNode = (node: string, sinceMs: number, baseline = baselineOf(view.node("p1", node))) =>
    evaluateGates(gates, {
      node,
      view: view.node("p1", node),
      nowMs: Date.now(),
      sinceMs,
      baseline,
      bundleId: "fix-1",
    });

  it("all gates hold while heartbeats flow and the patch is active", async () => {
    const beats = beatEvery(nc, 50, () => ({ pair: "p1", node: "n-ok", patches: PATCHED }), ANNOUNCED_MS);
    try {
      await until(() => (view.node("p1", "n-ok")?.received ?? 0) >= 2);
      const since = Date.now();
      await until(() => (view.node("p1", "n-ok")?.receivedAtMs ?? 0) > since);
      const results = evalNode("n-ok", since);
      assert.deepEqual(
        results.map((r) => [r.gate, r.ok]),
        [
          ["heartbeatGap", true],
          ["probes", true],
          ["noRestart", true],
          ["patchActive", true],
        ],
      );
    } finally {
      beats.stop();
    }
  });

  it("a heartbeat that stops mid-soak fails heartbeatGap, and the other gates fail as stale", async () => {
    // Announced 500 ms: the gates hold while beats flow even if this process is held up for a second,
    // and silence fails the gap gate once the last beat is more than 3 × 500 ms old.
    const beats = beatEvery(nc, 50, () => ({ pair: "p1", node: "n-stop", patches: PATCHED }), 500);
    await until(() => (view.node("p1", "n-stop")?.received ?? 0) >= 2);
    const since = Date.now();
    const baseline = baselineOf(view.node("p1", "n-stop"));
    await until(() => (view.node("p1", "n-stop")?.receivedAtMs ?? 0) > since);
    assert.equal(firstEnforcedFailure(evalNode("n-stop", since, baseline)), undefined);
    beats.stop();
    // Silence only grows: wait for the gap gate to fail, then check it was the silence that failed it.
    await until(
      () => evalNode("n-stop", since, baseline).find((r) => r.gate === "heartbeatGap")?.ok === false,
      10_000,
      "the gap gate to fail",
    );
    const results = evalNode("n-stop", since, baseline);
    const gap = results.find((r) => r.gate === "heartbeatGap");
    assert.equal(gap?.ok, false);
    assert.match(gap?.value ?? "", /missed/);
    assert.ok(
      results.every((r) => !r.ok),
      JSON.stringify(results),
    );
    assert.equal(firstEnforcedFailure(results)?.gate, "heartbeatGap");
  });

  it("a jump in the sequence (beats lost in transit) fails heartbeatGap", async () => {
    const since = Date.now() - 1;
    await publishBeat(nc, { pair: "p1", node: "n-seq", sequence: 1, intervalMs: ANNOUNCED_MS, patches: PATCHED });
    await publishBeat(nc, { pair: "p1", node: "n-seq", sequence: 2, intervalMs: ANNOUNCED_MS, patches: PATCHED });
    await publishBeat(nc, { pair: "p1", node: "n-seq", sequence: 7, intervalMs: ANNOUNCED_MS, patches: PATCHED });
    await until(() => view.node("p1", "n-seq")?.sequence === 7);
    const gap = evalNode("n-seq", since).find((r) => r.gate === "heartbeatGap");
    assert.equal(gap?.ok, false);
    assert.match(gap?.value ?? "", /4 missed/);
  });

  it("a restart of the service (new start time) fails noRestart, naming the service", async () => {
    let startTime = 5000;
    const beats = beatEvery(
      nc,
      50,
      () => ({
        pair: "p1",
        node: "n-restart",
        patches: PATCHED,
        services: [{ name: "smsc", healthy: true, pid: 100, startTime }],
      }),
      ANNOUNCED_MS,
    );
    try {
      await until(() => (view.node("p1", "n-restart")?.received ?? 0) >= 2);
      const since = Date.now();
      const baseline = baselineOf(view.node("p1", "n-restart"));
      startTime = 7000;
      await until(() => view.node("p1", "n-restart")?.services[0]?.startTime === 7000);
      const bad = firstEnforcedFailure(evalNode("n-restart", since, baseline));
      assert.equal(bad?.gate, "noRestart");
      assert.match(bad?.value ?? "", /smsc restarted .*start 5000→7000/);
    } finally {
      beats.stop();
    }
  });

  it("a failing probe fails the probes gate with the probe's message", async () => {
    const since = Date.now() - 1;
    await publishBeat(nc, {
      pair: "p1",
      node: "n-probe",
      sequence: 1,
      intervalMs: ANNOUNCED_MS,
      patches: PATCHED,
      services: [{ name: "smsc", healthy: false, pid: 100, startTime: 5000, failedProbe: "tcp" }],
    });
    await until(() => view.node("p1", "n-probe") !== undefined);
    const bad = firstEnforcedFailure(evalNode("n-probe", since));
    assert.equal(bad?.gate, "probes");
    assert.match(bad?.value ?? "", /smsc unhealthy \(tcp: connection refused\)/);
  });

  it("health the agent last probed long before its heartbeat (probing stuck) fails the probes gate", async () => {
    const since = Date.now() - 1;
    await publishBeat(nc, {
      pair: "p1",
      node: "n-stuck",
      sequence: 1,
      intervalMs: ANNOUNCED_MS,
      patches: PATCHED,
      services: [{ name: "smsc", healthy: true, pid: 100, startTime: 5000, checkedAtMs: Date.now() - 5000 }],
    });
    await until(() => view.node("p1", "n-stuck") !== undefined);
    const bad = firstEnforcedFailure(evalNode("n-stuck", since));
    assert.equal(bad?.gate, "probes");
    assert.match(bad?.value ?? "", /smsc last probed \d+ms before the heartbeat/);
  });

  it("a patch reported loaded but not active fails patchActive", async () => {
    const since = Date.now() - 1;
    await publishBeat(nc, {
      pair: "p1",
      node: "n-loaded",
      sequence: 1,
      intervalMs: ANNOUNCED_MS,
      patches: [{ pid: 100, patchId: "fix-1", state: "loaded" }],
    });
    await until(() => view.node("p1", "n-loaded") !== undefined);
    const bad = firstEnforcedFailure(evalNode("n-loaded", since));
    assert.equal(bad?.gate, "patchActive");
    assert.match(bad?.value ?? "", /pid 100 loaded/);
  });

  it("an observe-only gate records its failure but never fails the soak; an enforced one does", async () => {
    const since = Date.now() - 1;
    await publishBeat(nc, {
      pair: "p1",
      node: "n-metric",
      sequence: 1,
      intervalMs: ANNOUNCED_MS,
      patches: PATCHED,
      metrics: { error_rate: 0.2 },
    });
    await until(() => view.node("p1", "n-metric") !== undefined);
    const input = {
      node: "n-metric",
      view: view.node("p1", "n-metric"),
      nowMs: Date.now(),
      sinceMs: since,
      baseline: baselineOf(view.node("p1", "n-metric")),
      bundleId: "fix-1",
    };
    const observed = evaluateGates(
      gatesFrom("{metrics: [{name: error_rate, op: '<', value: 0.01, mode: observe}]}"),
      input,
    );
    const metric = observed.find((r) => r.gate === "metric:error_rate");
    assert.deepEqual([metric?.ok, metric?.mode], [false, "observe"]);
    assert.match(metric?.value ?? "", /error_rate=0.2 \(needs < 0.01\)/);
    assert.equal(firstEnforcedFailure(observed), undefined);
    const enforced = evaluateGates(gatesFrom("{metrics: [{name: error_rate, op: '<', value: 0.01}]}"), input);
    assert.equal(firstEnforcedFailure(enforced)?.gate, "metric:error_rate");
  });

  it("a metric the heartbeat does not carry fails its gate (missing is never a pass)", async () => {
    const since = Date.now() - 1;
    await publishBeat(nc, { pair: "p1", node: "n-nometric", sequence: 1, intervalMs: ANNOUNCED_MS, patches: PATCHED });
    await until(() => view.node("p1", "n-nometric") !== undefined);
    const results = evaluateGates(gatesFrom("{metrics: [{name: qps, op: '>', value: 10}]}"), {
      node: "n-nometric",
      view: view.node("p1", "n-nometric"),
      nowMs: Date.now(),
      sinceMs: since,
      baseline: [],
      bundleId: "fix-1",
    });
    assert.match(firstEnforcedFailure(results)?.value ?? "", /qps not reported/);
  });

  it("a metric read before the soak began is not judged, even when bad, until a read made since arrives", async () => {
    const metricGates = gatesFrom(
      "{heartbeatGap: {intervals: 3}, metrics: [{name: svc.error_rate, op: '<', value: 0.01}]}",
    );
    const judge = (since: number) =>
      evaluateGates(metricGates, {
        node: "n-readat",
        view: view.node("p1", "n-readat"),
        nowMs: Date.now(),
        sinceMs: since,
        baseline: baselineOf(view.node("p1", "n-readat")),
        bundleId: "fix-1",
      });
    const since = Date.now();
    const beat = async (sequence: number, errorRate: number, readAtMs: number) => {
      await publishBeat(nc, {
        pair: "p1",
        node: "n-readat",
        sequence,
        intervalMs: 1000, // the gap gate holds even if this process is held up
        patches: PATCHED,
        metrics: { "svc.error_rate": errorRate },
        metricsReadAtMs: { svc: readAtMs },
      });
      await until(() => view.node("p1", "n-readat")?.sequence === sequence);
    };
    // Sent after the soak began, but its values were read 5 s before it: neither a pass nor a failure.
    await beat(1, 0.001, since - 5000);
    let results = judge(since);
    assert.equal(
      results.find((r) => r.gate === "metric:svc.error_rate"),
      undefined,
    );
    assert.ok(results.length < gateCount(metricGates), "the soak cannot end on it");
    await beat(2, 0.5, since - 5000);
    assert.equal(firstEnforcedFailure(judge(since)), undefined, "nor can it fail the soak");
    // Read since the soak began: judged.
    await sleep(2);
    await beat(3, 0.5, Date.now());
    results = judge(since);
    assert.equal(results.length, gateCount(metricGates));
    assert.equal(firstEnforcedFailure(results)?.value, "svc.error_rate=0.5 (needs < 0.01)");
    await beat(4, 0.001, Date.now());
    assert.equal(firstEnforcedFailure(judge(since)), undefined);
  });

  it("a node never heard fails every gate", () => {
    const results = evalNode("n-never", Date.now(), []);
    assert.equal(results.length, 4);
    assert.ok(results.every((r) => !r.ok && r.value === "no heartbeat received"));
  });

  it("content gates wait for a heartbeat newer than the soak's start", async () => {
    await publishBeat(nc, { pair: "p1", node: "n-old", sequence: 1, intervalMs: ANNOUNCED_MS, patches: [] });
    await until(() => view.node("p1", "n-old") !== undefined);
    const since = Date.now();
    const results = evalNode("n-old", since);
    assert.deepEqual(
      results.map((r) => r.gate),
      ["heartbeatGap"],
    );
  });
});
