/**
 * A plan's metric gates evaluated on heartbeats from a real agent (`hotpatch agent` in its own
 * process) whose service metrics come from a real metrics page (another process) and from /proc:
 * the gate holds while the metric is under its threshold, fails naming the value once it crosses,
 * and fails as "not reported" when the page stops answering (old values never pass).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ClusterView } from "../../../controller/cluster/index.js";
import {
  evaluateGates,
  firstEnforcedFailure,
  type GateResult,
  type Gates,
  gateCount,
  parsePlan,
} from "../../../controller/rollout/index.js";
import { agentDoc, type CliAgent, startCliAgent, tempDir, writeConfig } from "../../helpers/agent_harness.js";
import { compileFixture, type RunningFixture, startFixture } from "../../helpers/fixtures.js";
import { until } from "../../helpers/heartbeats.js";
import { type MetricsPage, startMetricsPage } from "../../helpers/metrics_page.js";
import { type NatsServer, startNatsServer } from "../../helpers/nats_server.js";

const page = (depth: number) => `# TYPE queue_depth gauge\nqueue_depth ${depth}\n`;

describe("metric gates on a real agent's heartbeats", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let nc: NatsConnection;
  let view: ClusterView;
  let agent: CliAgent;
  let target: RunningFixture;
  let metrics: MetricsPage;
  // The gates as an operator writes them in plan.yaml; the names are the agent's `<service>.<metric>`.
  const gates: Gates = parsePlan(
    `cluster: c1
bundle: b
target: {exePath: /bin/x}
agents: {insecure: true}
gates:
  heartbeatGap: {intervals: 20}
  probes: false
  noRestart: false
  patchActive: false
  metrics:
    - {name: svc.queue_depth, op: "<", value: 100}
    - {name: svc.proc.threads, op: "==", value: 1}
    - {name: svc.metrics_up, op: "==", value: 1}
`,
    "plan.yaml",
    "/",
  ).gates;

  /**
   * The gates on node-a, once a heartbeat satisfies `ready` and every gate was judged: a metric gate
   * is judged only on values read after `since`, the soak's start.
   */
  const gatesAfter = async (since: number, ready: (m: Record<string, number>) => boolean) => {
    const judge = () =>
      evaluateGates(gates, {
        node: "node-a",
        view: view.node("p1", "node-a"),
        nowMs: Date.now(),
        sinceMs: since,
        baseline: [],
        bundleId: "b",
      });
    let results: GateResult[] = [];
    await until(
      () => {
        const n = view.node("p1", "node-a");
        if (n === undefined || !ready(n.metrics)) return false;
        results = judge();
        return results.length === gateCount(gates);
      },
      20_000,
      "a heartbeat with the expected metrics, read since the soak began",
    );
    return results;
  };

  before(async () => {
    tmp = await tempDir("hotpatch-metricgate-");
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    view = ClusterView.watch(nc, "c1");
    target = await startFixture(await compileFixture("c/counter.c", ["-O1", "-g"]));
    metrics = await startMetricsPage(tmp.dir, page(5));
    const { file } = await writeConfig(
      tmp.dir,
      "node-a",
      agentDoc(tmp.dir, "node-a", nats.url, {
        metrics: undefined,
        services: [
          {
            name: "svc",
            process: { pid: target.pid },
            metrics: { intervalMs: 200, http: { url: metrics.url, timeoutMs: 300, names: ["queue_depth"] } },
          },
        ],
      }),
    );
    agent = await startCliAgent(file);
  });

  after(async () => {
    await agent?.kill("SIGTERM");
    view?.close();
    await nc?.close();
    await metrics?.close();
    await target?.kill();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("hold while the service's metrics are within their thresholds", async () => {
    const results = await gatesAfter(Date.now(), (m) => m["svc.queue_depth"] === 5 && m["svc.metrics_up"] === 1);
    assert.deepEqual(
      results.map((r) => [r.gate, r.ok]),
      [
        ["heartbeatGap", true],
        ["metric:svc.queue_depth", true],
        ["metric:svc.proc.threads", true],
        ["metric:svc.metrics_up", true],
      ],
    );
    assert.equal(results[1]?.value, "svc.queue_depth=5 (needs < 100)");
    // The agent says when it read them, on its heartbeat's clock: shortly before it sent them (it
    // drops values older than maxAgeMs, here 500 ms; the bound leaves room for a loaded machine).
    const n = view.node("p1", "node-a");
    const readAt = n?.metricsReadAtMs.svc ?? 0;
    assert.ok(n && readAt <= n.sentAtMs && n.sentAtMs - readAt < 5000, `read at ${readAt}, sent at ${n?.sentAtMs}`);
  });

  it("fail, naming the value, once the metric crosses its threshold", async () => {
    await metrics.serve(page(250));
    const bad = firstEnforcedFailure(await gatesAfter(Date.now(), (m) => m["svc.queue_depth"] === 250));
    assert.deepEqual(
      [bad?.gate, bad?.node, bad?.value],
      ["metric:svc.queue_depth", "node-a", "svc.queue_depth=250 (needs < 100)"],
    );
  });

  it("fail as not reported when the metrics page stops answering: the last good value does not pass", async () => {
    await metrics.serve(page(5));
    await gatesAfter(Date.now(), (m) => m["svc.queue_depth"] === 5);
    await metrics.hang();
    const results = await gatesAfter(Date.now(), (m) => m["svc.metrics_up"] === 0);
    const depth = results.find((r) => r.gate === "metric:svc.queue_depth");
    assert.deepEqual([depth?.ok, depth?.value], [false, "svc.queue_depth not reported"]);
    const up = results.find((r) => r.gate === "metric:svc.metrics_up");
    assert.deepEqual([up?.ok, up?.value], [false, "svc.metrics_up=0 (needs == 1)"]);
    assert.equal(results.find((r) => r.gate === "metric:svc.proc.threads")?.ok, true, "/proc metrics go on");
  });
});
